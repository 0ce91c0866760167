"""Numpy-only maths of the serving path, shared by the Triton python models and in-process code.

Why one module: the customer vector and the ranking must be computed identically in Triton, in offline
evaluation and in tests. Triton's python backend runs an isolated interpreter that only sees the model's
own folders, so :mod:`fashionrec.publish` copies this very file into every published model version (as
:data:`MODULE_FILE`). It must therefore import nothing but numpy and the standard library.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

# File names inside a published model version folder: the contract between publish and the models.
MODULE_FILE = "fashionrec_ops.py"
EMBEDDINGS_FILE = "product_embeddings.npy"  # float32 [N, D], row i is product i
PRODUCT_IDS_FILE = "product_ids.txt"  # UTF-8, one product id per line, line i is product i


def load_catalogue(folder: Path) -> tuple[np.ndarray, list[bytes]]:
    """A published version folder's embeddings [N, D] and product ids (UTF-8 bytes, in row order)."""
    embeddings = np.load(folder / EMBEDDINGS_FILE)
    ids = (folder / PRODUCT_IDS_FILE).read_text(encoding="utf-8").splitlines()
    return embeddings, [pid.encode("utf-8") for pid in ids]


def config_parameter(model_config: dict, key: str) -> str:
    """A string parameter of a model's config.pbtxt (the publisher renders them from ServingConfig)."""
    return model_config["parameters"][key]["string_value"]


def lookup_rows(index: Mapping[object, int], product_ids: Iterable[object]) -> np.ndarray:
    """Map product ids to catalogue rows; ids missing from ``index`` map to -1 (unknown, ignored later)."""
    return np.fromiter((index.get(pid, -1) for pid in product_ids), dtype=np.int64)


def customer_vector(embeddings: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean of the embeddings of a customer's history, float32 [D].

    Rows < 0 (unknown products) are ignored. A history with no known product, or whose known products
    weigh nothing in total, gives the zero vector: every product then scores sigmoid(0) = 0.5.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)
    if rows.shape != weights.shape:
        raise ValueError(f"{rows.size} history rows but {weights.size} weights")
    known = rows >= 0
    total = weights[known].sum()
    if total <= 0:
        return np.zeros(embeddings.shape[1], dtype=np.float32)
    mean = weights[known] @ embeddings[rows[known]].astype(np.float64) / total
    return mean.astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings (tanh form), float32."""
    return (0.5 * (np.tanh(0.5 * np.asarray(x, dtype=np.float64)) + 1.0)).astype(np.float32)


def rank_candidates(
    customer_vectors: np.ndarray,
    table: np.ndarray,
    k: int,
    exclude_rows: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k products for each customer by dot product: (rows [B, k'], scores [B, k']).

    Scores are sigmoid(p_u . q_i). Each row is ordered by dot product descending (so by score
    descending), ties broken by the lower catalogue row, so results are deterministic. ``exclude_rows``
    ([B, H] ints, negatives are padding) removes products, e.g. the history. k' = min(k, products left
    after the largest exclusion), so every returned product is a real, non-excluded one.
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    dots = np.asarray(customer_vectors, dtype=np.float32) @ np.asarray(table, dtype=np.float32).T
    dots = np.atleast_2d(dots)
    available = dots.shape[1]
    if exclude_rows is not None:
        excluded = _exclusion_mask(np.atleast_2d(exclude_rows), dots.shape)
        dots[excluded] = -np.inf
        available -= int(excluded.sum(axis=1).max(initial=0))
    k = min(k, available)
    if k == 0:
        return np.zeros((dots.shape[0], 0), np.int64), np.zeros((dots.shape[0], 0), np.float32)
    rows = _top_k_rows(dots, k)
    top = np.take_along_axis(dots, rows, axis=1)
    order = np.lexsort((rows, -top), axis=1)
    rows = np.take_along_axis(rows, order, axis=1)
    return rows, sigmoid(np.take_along_axis(top, order, axis=1))


def _exclusion_mask(exclude_rows: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean [B, N] mask of the rows to exclude; negative entries are padding."""
    mask = np.zeros(shape, dtype=bool)
    batch, cols = np.nonzero(exclude_rows >= 0)
    mask[batch, exclude_rows[batch, cols]] = True
    return mask


def _top_k_rows(dots: np.ndarray, k: int) -> np.ndarray:
    """Unordered rows of the k largest dots per batch row, in O(N) with argpartition (no full sort).

    argpartition picks arbitrarily among products tied with the k-th largest value; the rare batch
    rows where that matters are redone so the lowest tied rows win, making the set deterministic.
    """
    n = dots.shape[1]
    rows = np.argpartition(dots, n - k, axis=1)[:, n - k :]
    top = np.take_along_axis(dots, rows, axis=1)
    kth = top.min(axis=1, keepdims=True)
    unfair = (dots == kth).sum(axis=1) > (top == kth).sum(axis=1)
    for b in np.flatnonzero(unfair):
        rows[b] = _lowest_tied_rows_first(dots[b], rows[b], kth[b, 0])
    return rows


def _lowest_tied_rows_first(dots: np.ndarray, rows: np.ndarray, kth: float) -> np.ndarray:
    """Keep the chosen rows above the k-th value, fill the rest with the lowest rows equal to it."""
    above = rows[dots[rows] > kth]
    tied = np.flatnonzero(dots == kth)[: rows.size - above.size]
    return np.concatenate([above, tied])


def top_k_error(k: int, max_top_k: int) -> str | None:
    """Why a requested k cannot be served, or None when it can."""
    if not 1 <= k <= max_top_k:
        return f"TOP_K must be between 1 and {max_top_k}, got {k}"
    return None


def history_error(num_ids: int, weights: np.ndarray, max_history_length: int) -> str | None:
    """Why a history (ids + weights) cannot be served, or None when it can."""
    if weights.size != num_ids:
        return f"HISTORY_WEIGHTS has {weights.size} values but HISTORY_PRODUCT_IDS has {num_ids}"
    if num_ids > max_history_length:
        return f"history has {num_ids} products, more than max_history_length={max_history_length}"
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        return "HISTORY_WEIGHTS must be finite and non-negative"
    return None
