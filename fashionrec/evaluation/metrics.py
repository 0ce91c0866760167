"""Ranking metrics over full-catalogue top-K lists, with the contract of RecBole/TFRS.

``ranked`` is an [customers, K] array of product rows, best first; ``targets`` lists each customer's
relevant rows. Binary relevance. Recall@K = hits / |targets|; NDCG@K uses the ideal ordering of
min(K, |targets|) hits; MRR is 1 / rank of the first hit within the list (0 if none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hit_matrix(ranked: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean [customers, K]: is the product at each rank one of the customer's targets?"""
    return np.array([np.isin(row, target) for row, target in zip(ranked, targets, strict=True)], dtype=bool).reshape(
        ranked.shape
    )


def recall_at_k(hits: np.ndarray, num_targets: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(num_targets, 1)


def ndcg_at_k(hits: np.ndarray, num_targets: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(np.maximum(num_targets, 1), k) - 1]
    return dcg / ideal


def reciprocal_rank(hits: np.ndarray) -> np.ndarray:
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def catalogue_coverage(ranked: np.ndarray, k: int, num_products: int) -> float:
    """Share of the catalogue that appears in at least one customer's top-K."""
    return len(np.unique(ranked[:, :k])) / num_products


def summarise(ranked: np.ndarray, targets: Sequence[np.ndarray], ks: Sequence[int], num_products: int) -> dict[str, float]:
    """Mean metrics over customers, keyed like ``recall@20``."""
    hits = hit_matrix(ranked, targets)
    sizes = np.array([len(t) for t in targets])
    result = {"mrr": float(reciprocal_rank(hits).mean()), "customers": float(len(targets))}
    for k in ks:
        result[f"recall@{k}"] = float(recall_at_k(hits, sizes, k).mean())
        result[f"ndcg@{k}"] = float(ndcg_at_k(hits, sizes, k).mean())
        result[f"coverage@{k}"] = catalogue_coverage(ranked, k, num_products)
    return result
