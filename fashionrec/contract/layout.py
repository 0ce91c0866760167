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


class CorruptVersion(ValueError):
    """A version folder's file that cannot be served as it is: the message names the file and the fault.

    Raised when a Triton model loads the folder (so Triton refuses the version, with this message, rather
    than serving it) and when :mod:`fashionrec.repository.check` reads it before any config names it.
    """


def load_catalogue(folder: Path) -> tuple[np.ndarray, list[bytes]]:
    """A published version folder's embeddings [N, D] and product ids (UTF-8 bytes, in row order),
    checked: a float matrix, finite, one row per id, ids non-empty and unique."""
    path, ids_path = folder / EMBEDDINGS_FILE, folder / PRODUCT_IDS_FILE
    embeddings = _load_array(path)
    ids = _read_text(ids_path).splitlines()
    if embeddings.ndim != 2 or embeddings.shape[1] == 0 or not np.issubdtype(embeddings.dtype, np.floating):
        raise CorruptVersion(f"{path}: expected a float matrix [products, dimensions], got {embeddings.dtype} "
                             f"of shape {embeddings.shape}")
    if len(embeddings) != len(ids) or not ids:
        raise CorruptVersion(f"{path} has {len(embeddings)} rows but {ids_path.name} has {len(ids)} ids")
    bad_rows = int((~np.isfinite(embeddings).all(axis=1)).sum())
    if bad_rows:
        raise CorruptVersion(f"{path}: {bad_rows} of {len(embeddings)} rows hold NaN or infinite values")
    if len(set(ids)) != len(ids) or not all(ids):
        raise CorruptVersion(f"{ids_path}: product ids must be non-empty and unique")
    return embeddings, [pid.encode("utf-8") for pid in ids]


def load_prior(folder: Path, num_products: int) -> np.ndarray:
    """A version folder's popularity prior [N]; zeros for a version published without one."""
    path = folder / PRIOR_FILE
    if not path.exists():
        return np.zeros(num_products, np.float32)
    prior = _load_array(path).astype(np.float32)
    if prior.shape != (num_products,) or not np.all(np.isfinite(prior)):
        raise CorruptVersion(f"{path}: expected {num_products} finite values, got shape {prior.shape}")
    return prior


def _load_array(path: Path) -> np.ndarray:
    """A .npy file, never unpickled; CorruptVersion when it is missing, truncated or not an array."""
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # a short read is a ValueError / EOFError in numpy
        raise CorruptVersion(f"{path}: unreadable ({error})") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptVersion(f"{path}: unreadable ({error})") from None


def config_parameter(model_config: dict, key: str) -> str:
    """A string parameter of a model's config.pbtxt (the publisher renders them from ServingConfig)."""
    return model_config["parameters"][key]["string_value"]


CANDIDATE_SETS_FILE = "candidate_sets.json"  # {"sale": [product ids], ...}: named candidate restrictions
CATEGORY_SET_PREFIX = "category:"  # the set of a category's products, as the export stage writes it


def load_json(path: Path) -> dict:
    """A JSON object file of a published version folder (aggregation, candidate sets)."""
    try:
        loaded = json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise CorruptVersion(f"{path}: not JSON ({error})") from None
    if not isinstance(loaded, dict):
        raise CorruptVersion(f"{path}: expected a JSON object")
    return loaded
