"""The version a repository serves, read back as the ranking model loads it: so that evaluation can
score the published model exactly as it serves (the gate's change checks), without publishing code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashionrec import storage
from fashionrec.model.aggregation import Aggregation
from fashionrec.config import ServingConfig
from fashionrec.contract import ops
from fashionrec.repository.manifest import read_manifest, serving_version


@dataclass(frozen=True)
class ServedCatalogue:
    """What the currently published version serves: its number, product ids, embeddings, popularity
    prior and history pooling, so that it can be scored exactly as it serves."""

    version: int
    product_ids: list[str]
    embeddings: np.ndarray
    prior: np.ndarray | None = None
    aggregation: Aggregation = Aggregation()


def currently_published(model_repository: str, serving: ServingConfig) -> ServedCatalogue | None:
    """The served version's catalogue (after a rollback: the version rolled back to), as the ranking
    model loads it; None before the first publish."""
    version = serving_version(read_manifest(str(model_repository)))
    if version is None:
        return None
    with storage.local_copy(storage.join(str(model_repository), serving.ranking_model_name, str(version))) as folder:
        embeddings, ids = ops.load_catalogue(Path(folder))
        prior = ops.load_prior(Path(folder), len(ids))
    aggregation = Aggregation.read(storage.join(str(model_repository), serving.customer_model_name, str(version),
                                                ops.AGGREGATION_FILE))
    return ServedCatalogue(int(version), [pid.decode("utf-8") for pid in ids], embeddings, prior, aggregation)
