"""Export: an embedding for every catalogue product, new (never interacted) products included."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fashionrec import ingest as ingest_files
from fashionrec import storage
from fashionrec.aggregation import AGGREGATION_FILE, Aggregation
from fashionrec.config import EventWeights
from fashionrec.train import item_embeddings, load_item_tower, load_train_config

EMBEDDINGS_FILE = "embeddings.parquet"


@dataclass(frozen=True)
class ExportSummary:
    products: int
    new_products: int
    dimension: int


def export_embeddings(ingested_dir: str, transformed_dir: str, model_dir: str, output_dir: str,
                      event_weights: EventWeights = EventWeights()) -> ExportSummary:
    """Write ``embeddings.parquet`` (``product_id``, ``embedding``, ``is_new``) in product-index order,
    and ``aggregation.json``: how serving must pool a history (the model's pooling, these event weights).

    A new product has no trained id embedding (it was zero-initialised and never updated, or it is
    out of vocabulary), so its vector comes from its content alone.
    """
    with storage.local_copy(transformed_dir) as local_transformed, storage.local_copy(model_dir) as local_model:
        tower = load_item_tower(local_transformed, local_model)
        embeddings = item_embeddings(tower)
    product_ids = tower.product_ids
    catalogue = storage.read_table(storage.join(ingested_dir, ingest_files.CATALOGUE_FILE))
    new = set(catalogue.loc[catalogue["is_new"], "product_id"])
    is_new = np.array([pid in new for pid in product_ids])
    write_embeddings(storage.join(output_dir, EMBEDDINGS_FILE), product_ids, embeddings, is_new)
    Aggregation.from_training(load_train_config(model_dir), event_weights).write(
        storage.join(output_dir, AGGREGATION_FILE))
    return ExportSummary(products=len(product_ids), new_products=int(is_new.sum()), dimension=embeddings.shape[1])


def write_embeddings(uri: str, product_ids: np.ndarray, embeddings: np.ndarray, is_new: np.ndarray) -> None:
    dimension = embeddings.shape[1]
    table = pa.table(
        {
            "product_id": pa.array(product_ids, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(embeddings.reshape(-1), pa.float32()), dimension),
            "is_new": pa.array(is_new, pa.bool_()),
        }
    )
    with storage.open_output(uri) as stream:
        pq.write_table(table, stream)


def read_embeddings(uri: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product_ids [N], embeddings float32 [N, D], is_new [N]) from an embeddings Parquet file."""
    frame: pd.DataFrame = storage.read_table(uri)
    embeddings = np.stack(frame["embedding"].to_numpy()).astype(np.float32)
    return frame["product_id"].to_numpy(str), embeddings, frame["is_new"].to_numpy(bool)
