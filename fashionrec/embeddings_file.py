"""The export stage's ``embeddings.parquet``: one row per product (``product_id``, ``embedding``,
``is_new``, ``popularity_prior``), written by the export stage and by catalogue updates, read by
evaluation and publishing. Apart from TensorFlow (``fashionrec.export``), so serving code can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fashionrec import storage
from fashionrec.popularity import PRIOR_COLUMN



def write_embeddings(uri: str, product_ids: np.ndarray, embeddings: np.ndarray, is_new: np.ndarray,
                     prior: np.ndarray | None = None) -> None:
    """One row per product; ``prior`` (the popularity prior per product) is stored when given."""
    dimension = embeddings.shape[1]
    columns = {
        "product_id": pa.array(product_ids, pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), dimension),
        "is_new": pa.array(is_new, pa.bool_()),
    }
    if prior is not None:
        columns[PRIOR_COLUMN] = pa.array(np.asarray(prior, np.float32), pa.float32())
    table = pa.table(columns)
    with storage.open_output(uri) as stream:
        pq.write_table(table, stream)


@dataclass(frozen=True)
class ExportedEmbeddings:
    """An embeddings Parquet file, row i = product i."""

    product_ids: np.ndarray  # str [N]
    embeddings: np.ndarray  # float32 [N, D]
    is_new: np.ndarray  # bool [N]
    prior: np.ndarray  # float32 [N]: the popularity prior (zeros for an export written without one)


def read_exported(uri: str) -> ExportedEmbeddings:
    """Every column of an embeddings Parquet file, read once."""
    frame: pd.DataFrame = storage.read_table(uri)
    prior = (frame[PRIOR_COLUMN].to_numpy(np.float32) if PRIOR_COLUMN in frame.columns
             else np.zeros(len(frame), np.float32))
    return ExportedEmbeddings(frame["product_id"].to_numpy(str), np.stack(frame["embedding"].to_numpy()).astype(
        np.float32), frame["is_new"].to_numpy(bool), prior)


def read_embeddings(uri: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product_ids [N], embeddings float32 [N, D], is_new [N]) from an embeddings Parquet file."""
    exported = read_exported(uri)
    return exported.product_ids, exported.embeddings, exported.is_new


def read_popularity_prior(uri: str) -> np.ndarray:
    """The popularity prior per product (float32 [N], in the file's row order); zeros for an export
    written without one."""
    return read_exported(uri).prior
