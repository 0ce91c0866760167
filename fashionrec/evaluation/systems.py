"""The recommenders an evaluation compares, each able to rank the catalogue and to score given products.

The candidate and the published model rank with exactly the serving maths (``fashionrec.serving.ops``:
weighted-mean customer vector, dot-product top-K excluding the history); popularity ranks by training
interactions. Rows are always the current catalogue's product rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fashionrec.config import EvaluateConfig
from fashionrec.publish import ServedCatalogue
from fashionrec.serving import ops

Histories = list[np.ndarray]
BATCH = 1024


@dataclass(frozen=True)
class System:
    """``rank(history, weights, k)`` → [customers, k] rows; ``score(history, weights, rows)`` → scores per customer."""

    rank: Callable[[Histories, Histories, int], np.ndarray]
    score: Callable[[Histories, Histories, Histories], Histories]


def embedding_system(table: np.ndarray, prior: np.ndarray | None = None) -> System:
    """Rank by ``p_u . q_i + prior_i`` (``prior``: the popularity prior, default none). A customer
    without a history has the zero vector, so the prior alone ranks for them: recent popularity."""
    def vectors(history: Histories, weights: Histories) -> np.ndarray:
        return np.stack([ops.customer_vector(table, h, w) for h, w in zip(history, weights, strict=True)])

    def rank(history: Histories, weights: Histories, k: int) -> np.ndarray:
        customers = vectors(history, weights)
        parts = [ops.rank_candidates(customers[s : s + BATCH], table, k, padded(history[s : s + BATCH]), prior)[0]
                 for s in range(0, len(customers), BATCH)]
        return np.concatenate(parts)

    def score(history: Histories, weights: Histories, rows: Histories) -> Histories:
        customers = vectors(history, weights)
        bias = np.zeros(len(table), np.float32) if prior is None else prior
        return [table[r] @ v + bias[r] for v, r in zip(customers, rows, strict=True)]

    return System(rank, score)


def popularity_system(popularity: np.ndarray) -> System:
    """Most-interacted products first, skipping each customer's own history."""
    order = np.argsort(-popularity, kind="stable")

    def rank(history: Histories, _: Histories, k: int) -> np.ndarray:
        return np.stack([order[~np.isin(order, h)][:k] for h in history])

    def score(_: Histories, __: Histories, rows: Histories) -> Histories:
        return [popularity[r] for r in rows]

    return System(rank, score)


def ials_system(train: pd.DataFrame, product_ids: np.ndarray, config: EvaluateConfig) -> System:
    """iALS (the ``implicit`` library) fitted on the training events, a strong collaborative baseline.

    Customers are folded in from the same history the other systems see (``recalculate_user``), so new
    customers are handled and the comparison is like for like.
    """
    from implicit.als import AlternatingLeastSquares
    from scipy.sparse import csr_matrix
    from threadpoolctl import threadpool_limits

    rows = pd.Series(np.arange(len(product_ids)), index=product_ids)
    known = train[train["product_id"].isin(rows.index)]
    customers, customer_rows = np.unique(known["customer_id"].to_numpy(), return_inverse=True)
    matrix = csr_matrix(
        (config.ials_alpha * known["weight"].to_numpy(np.float32), (customer_rows, rows[known["product_id"]].to_numpy())),
        shape=(len(customers), len(product_ids)),
    )
    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, not BLAS's
        model = AlternatingLeastSquares(factors=config.ials_factors, iterations=config.ials_iterations,
                                        regularization=config.ials_regularization, random_state=config.seed)
        model.fit(matrix, show_progress=False)

    def history_matrix(history: Histories, weights: Histories) -> csr_matrix:
        data = np.concatenate([config.ials_alpha * np.asarray(w, np.float32) for w in weights]) if history else []
        indptr = np.r_[0, np.cumsum([len(h) for h in history])]
        matrix = csr_matrix((data, np.concatenate(history) if history else [], indptr),
                            shape=(len(history), len(product_ids)))
        matrix.sum_duplicates()
        return matrix

    def factors(history: Histories, weights: Histories) -> np.ndarray:
        return np.asarray(model.recalculate_user(np.arange(len(history)), history_matrix(history, weights)))

    def rank(history: Histories, weights: Histories, k: int) -> np.ndarray:
        users = factors(history, weights)
        return np.concatenate([ops.rank_candidates(users[s : s + BATCH], model.item_factors, k,
                                                   padded(history[s : s + BATCH]))[0]
                               for s in range(0, len(users), BATCH)])

    def score(history: Histories, weights: Histories, rows: Histories) -> Histories:
        users = factors(history, weights)
        return [model.item_factors[r] @ u for u, r in zip(users, rows, strict=True)]

    return System(rank, score)


def published_system(published: ServedCatalogue, product_ids: np.ndarray) -> System:
    """The published version's embeddings, translating product rows by product id both ways.

    Products it does not know count neither in its customer vectors nor among its results (they score
    -inf), which is exactly what serving it would do.
    """
    to_published = ops.lookup_rows({pid: row for row, pid in enumerate(published.product_ids)}, product_ids)
    to_current = ops.lookup_rows({pid: row for row, pid in enumerate(product_ids)}, published.product_ids)
    inner = embedding_system(published.embeddings, published.prior)

    def translate(history: Histories, weights: Histories) -> tuple[Histories, Histories]:
        kept = [to_published[h] >= 0 for h in history]
        return ([to_published[h][keep] for h, keep in zip(history, kept, strict=True)],
                [w[keep] for w, keep in zip(weights, kept, strict=True)])

    def rank(history: Histories, weights: Histories, k: int) -> np.ndarray:
        return to_current[inner.rank(*translate(history, weights), k)]

    def score(history: Histories, weights: Histories, rows: Histories) -> Histories:
        mapped = [to_published[r] for r in rows]
        scores = inner.score(*translate(history, weights), [np.maximum(m, 0) for m in mapped])
        return [np.where(m >= 0, s, -np.inf) for m, s in zip(mapped, scores, strict=True)]

    return System(rank, score)


def padded(rows: Histories) -> np.ndarray:
    """Histories as one [customers, longest] array padded with -1 (the exclusion format of ops)."""
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), max(width, 1)), -1, np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
