"""A published version folder's layout, and the loaders the Triton models read it with.

Part of :mod:`fashionrec.contract` (copied into every version folder under the same import path): the
file names are the contract between publishing (:mod:`fashionrec.repository.publish`) and the models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EMBEDDINGS_FILE = "product_embeddings.npy"  # float32 [N, D], row i is product i
PRODUCT_IDS_FILE = "product_ids.txt"  # UTF-8, one product id per line, line i is product i
AGGREGATION_FILE = "aggregation.json"  # how histories are pooled: see history_weights
PRIOR_FILE = "popularity_prior.npy"  # float32 [N]: each product's popularity prior, added to its logit


def load_catalogue(folder: Path) -> tuple[np.ndarray, list[bytes]]:
    """A published version folder's embeddings [N, D] and product ids (UTF-8 bytes, in row order)."""
    embeddings = np.load(folder / EMBEDDINGS_FILE)
    ids = (folder / PRODUCT_IDS_FILE).read_text(encoding="utf-8").splitlines()
    return embeddings, [pid.encode("utf-8") for pid in ids]


def load_prior(folder: Path, num_products: int) -> np.ndarray:
    """A version folder's popularity prior [N]; zeros for a version published without one."""
    path = folder / PRIOR_FILE
    if not path.exists():
        return np.zeros(num_products, np.float32)
    prior = np.load(path).astype(np.float32)
    if prior.shape != (num_products,) or not np.all(np.isfinite(prior)):
        raise ValueError(f"{path}: expected {num_products} finite values, got shape {prior.shape}")
    return prior


def config_parameter(model_config: dict, key: str) -> str:
    """A string parameter of a model's config.pbtxt (the publisher renders them from ServingConfig)."""
    return model_config["parameters"][key]["string_value"]


CANDIDATE_SETS_FILE = "candidate_sets.json"  # {"sale": [product ids], ...}: named candidate restrictions


def load_json(path: Path) -> dict:
    """A JSON file of a published version folder (aggregation, candidate sets)."""
    return json.loads(path.read_text(encoding="utf-8"))
