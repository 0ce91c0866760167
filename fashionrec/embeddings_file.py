"""The export stage's ``embeddings.parquet``: one row per product (``product_id``, ``embedding``,
``is_new``, ``popularity_prior``), written by the export stage and by catalogue updates, read by
evaluation and publishing. Apart from TensorFlow (``fashionrec.stages.export``), so serving code can use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fashionrec import storage
from fashionrec.artifacts import PRIOR_COLUMN



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
    prior: np.ndarray | None  # float32 [N]: the popularity prior added to each logit (None: written without one)


def read_exported(uri: str) -> ExportedEmbeddings:
    """Read and check an embeddings Parquet file (the one reader: evaluation, publishing and catalogue
    updates all read it here): product_id (unique single-line strings), embedding (finite lists of one
    length D), is_new (optional, default false) and the popularity prior (optional, finite)."""
    with storage.open_input(str(uri)) as stream:
        table = pq.read_table(stream)
    missing = {"product_id", "embedding"} - set(table.column_names)
    if missing:
        raise ValueError(f"{uri} lacks columns {sorted(missing)}")
    ids = _product_ids(table.column("product_id"))
    embeddings = _embedding_matrix(table.column("embedding"))
    is_new = (np.asarray(table.column("is_new").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
              if "is_new" in table.column_names else np.zeros(len(ids), dtype=bool))
    return ExportedEmbeddings(np.asarray(ids, dtype=str), embeddings, is_new, _prior(table, uri))


def read_embeddings(uri: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product_ids [N], embeddings float32 [N, D], is_new [N]) from an embeddings Parquet file."""
    exported = read_exported(uri)
    return exported.product_ids, exported.embeddings, exported.is_new


def read_popularity_prior(uri: str) -> np.ndarray:
    """The popularity prior per product (float32 [N], in the file's row order); zeros for an export
    written without one."""
    exported = read_exported(uri)
    return np.zeros(len(exported.product_ids), np.float32) if exported.prior is None else exported.prior


def _prior(table: pa.Table, uri: str) -> np.ndarray | None:
    """The ``popularity_prior`` column (finite floats) if the export wrote one."""
    if PRIOR_COLUMN not in table.column_names:
        return None
    column = table.column(PRIOR_COLUMN)
    prior = np.asarray(column.to_numpy(), dtype=np.float32) if column.null_count == 0 else None
    if prior is None or not np.all(np.isfinite(prior)):
        raise ValueError(f"{uri}: {PRIOR_COLUMN} must be finite numbers, one per product")
    return prior


def _product_ids(column: pa.ChunkedArray) -> list[str]:
    """Product ids as strings: non-null, non-empty, unique, one line each (stored one per line)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise ValueError(f"product_id must be strings, got {column.type}")
    ids = column.to_pylist()
    if column.null_count or any(not pid or "\n" in pid or "\r" in pid for pid in ids):
        raise ValueError("product_id must be non-empty single-line strings without nulls")
    if len(set(ids)) != len(ids):
        raise ValueError("product_id values must be unique")
    if not ids:
        raise ValueError("the catalogue is empty")
    return ids


def _embedding_matrix(column: pa.ChunkedArray) -> np.ndarray:
    """[N, D] float32 from a list / large_list / fixed_size_list column, every row of the same D."""
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise ValueError(f"embedding must be a list column, got {kind}")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    if column.null_count or lengths.size == 0 or lengths.min() != lengths.max() or lengths[0] == 0:
        raise ValueError("embedding rows must be non-null lists of one common, positive length")
    values = pc.list_flatten(column)
    if values.null_count:
        raise ValueError("embedding values must not be null")
    matrix = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(len(lengths), int(lengths[0]))
    if not np.all(np.isfinite(matrix)):
        raise ValueError("embedding values must be finite")
    return matrix
