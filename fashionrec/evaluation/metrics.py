"""Ranking metrics over full-catalogue top-K lists, with the contract of RecBole/TFRS.

``ranked`` is an [customers, K] array of product rows, best first; ``targets`` lists each customer's
relevant rows. Binary relevance. Recall@K = hits / |targets|; NDCG@K uses the ideal ordering of
min(K, |targets|) hits; MRR is 1 / rank of the first hit within the list (0 if none).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def hit_matrix(ranked: np.ndarray, targets: Sequence[np.ndarray]) -> np.ndarray:
    """Boolean [customers, K]: is the product at each rank one of the customer's targets?

    One ``np.isin`` over (customer, product) keys for the whole matrix, not one call per customer."""
    ranked = np.asarray(ranked, np.int64)
    if len(targets) != len(ranked):
        raise ValueError(f"{len(ranked)} ranked rows but {len(targets)} target lists")
    flat = np.concatenate([np.asarray(t, np.int64).ravel() for t in targets] + [np.zeros(0, np.int64)])
    if ranked.size == 0 or flat.size == 0:
        return np.zeros(ranked.shape, bool)
    low = min(ranked.min(), flat.min())
    span = max(ranked.max(), flat.max()) - low + 1
    owners = np.repeat(np.arange(len(targets), dtype=np.int64), [np.size(t) for t in targets])
    keys = np.arange(len(ranked), dtype=np.int64)[:, None] * span + (ranked - low)
    return np.isin(keys, owners * span + (flat - low))


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


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / k


def popularity_percentile(ranked: np.ndarray, k: int, popularity: np.ndarray) -> np.ndarray:
    """Per customer, the mean popularity percentile (0 = least, 1 = most popular) of the top-K products.

    A measure of popularity bias: a recommender that only pushes best-sellers scores near 1.
    """
    percentile = np.argsort(np.argsort(popularity, kind="stable"), kind="stable") / max(len(popularity) - 1, 1)
    return percentile[ranked[:, :k]].mean(axis=1)


def metric_names(ks: Sequence[int]) -> tuple[str, ...]:
    """The keys of :func:`per_customer`'s result, in its order."""
    return ("mrr", *(f"{name}@{k}" for k in ks for name in ("recall", "precision", "ndcg")))


def per_customer(ranked: np.ndarray, targets: Sequence[np.ndarray], ks: Sequence[int]) -> dict[str, np.ndarray]:
    """Every per-customer metric, keyed like ``recall@20``: the inputs of means and bootstrap intervals."""
    hits = hit_matrix(ranked, targets)
    sizes = np.array([len(t) for t in targets])
    values = {"mrr": reciprocal_rank(hits)}
    for k in ks:
        values[f"recall@{k}"] = recall_at_k(hits, sizes, k)
        values[f"precision@{k}"] = precision_at_k(hits, k)
        values[f"ndcg@{k}"] = ndcg_at_k(hits, sizes, k)
    return values


def summarise(ranked: np.ndarray, targets: Sequence[np.ndarray], ks: Sequence[int], num_products: int) -> dict[str, float]:
    """Mean metrics over customers, keyed like ``recall@20``, plus catalogue coverage@K."""
    result = {name: float(values.mean()) for name, values in per_customer(ranked, targets, ks).items()}
    result["customers"] = float(len(targets))
    for k in ks:
        result[f"coverage@{k}"] = catalogue_coverage(ranked, k, num_products)
    return result


def sampled_auc(positive: Sequence[np.ndarray], negative: Sequence[np.ndarray]) -> np.ndarray:
    """Per customer, P(a target outscores a sampled non-target); ties count one half."""
    values = []
    for pos, neg in zip(positive, negative, strict=True):
        if len(pos) == 0 or len(neg) == 0:
            values.append(np.nan)
            continue
        wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
        values.append(wins)
    return np.asarray(values, np.float64)
