"""The recommenders an evaluation compares, each able to rank the catalogue and to score given products.

The candidate and the published model rank with exactly the serving path (``fashionrec.contract``:
weighted-mean customer vector, the served table's dot products in its dtype, exact top-K excluding the
history); the baselines are popularity
(training interactions), recent popularity (time-decayed), iALS and EASE. Every system excludes the
whole history it is given and the baselines use all of it. Rows are always the current catalogue's
product rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.linalg import lapack
from scipy.sparse import csr_matrix

from fashionrec.config import EvaluateConfig
from fashionrec.model.popularity import recent_popularity
from fashionrec.repository.served import ServedVersion
from fashionrec.contract import ops
from fashionrec.contract.scoring import ScoringTable

Histories = list[np.ndarray]
BATCH = 1024


@dataclass(frozen=True)
class System:
    """``rank(history, weights, k)`` → [customers, k] rows; ``score(history, weights, rows)`` → scores per customer."""

    rank: Callable[[Histories, Histories, int], np.ndarray]
    score: Callable[[Histories, Histories, Histories], Histories]


def embedding_system(table: np.ndarray, prior: np.ndarray | None = None, dtype: str = "float32",
                     in_context: Callable[[np.ndarray], np.ndarray] | None = None) -> System:
    """Rank by ``p_u . q_i + prior_i`` (``prior``: the popularity prior, default none) exactly as
    ``rank_products`` serves it: the same ScoringTable, held as ``dtype`` (``serving.table_dtype``: fp16
    rounds the table as the server does), and the same exact top-k with exclusions. A customer without a
    history has the zero vector, so the prior alone ranks for them: recent popularity. ``in_context`` moves
    the customer vectors (all the customers ranked, in order) by their requests' context, as
    ``customer_vector`` serves it (:meth:`fashionrec.contract.context.ContextTables.adjust`)."""
    served = ScoringTable(table, dtype=dtype, prior=prior)

    def vectors(history: Histories, weights: Histories) -> np.ndarray:
        pooled = np.stack([ops.customer_vector(table, h, w) for h, w in zip(history, weights, strict=True)])
        return pooled if in_context is None else in_context(pooled)

    def rank(history: Histories, weights: Histories, k: int) -> np.ndarray:
        customers = vectors(history, weights)
        ranked = [ops.rank_positions(dots, None, seen, k)
                  for s in range(0, len(customers), BATCH)
                  for dots, seen in zip(served.scores(customers[s : s + BATCH]), history[s : s + BATCH], strict=True)]
        width = min(len(rows) for rows in ranked)  # fewer than k only when a history covers the catalogue
        return np.stack([rows[:width] for rows in ranked])

    def score(history: Histories, weights: Histories, rows: Histories) -> Histories:
        return [served.scores_of(v, r) for v, r in zip(vectors(history, weights), rows, strict=True)]

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
    customers are handled and the comparison is like for like. Confidence is ``ials_alpha`` per event,
    times its event weight when ``ials_event_weights``.
    """
    from implicit.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    def confidence(weights: np.ndarray) -> np.ndarray:
        values = np.asarray(weights, np.float32) if config.ials_event_weights else np.ones(len(weights), np.float32)
        return config.ials_alpha * values

    matrix = interaction_matrix(train, product_ids, confidence)
    with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, not BLAS's
        model = AlternatingLeastSquares(factors=config.ials_factors, iterations=config.ials_iterations,
                                        regularization=config.ials_regularization, random_state=config.seed)
        model.fit(matrix, show_progress=False)

    def factors(history: Histories, weights: Histories) -> np.ndarray:
        matrix = history_matrix(history, [confidence(w) for w in weights], len(product_ids))
        return np.asarray(model.recalculate_user(np.arange(len(history)), matrix))

    return _factor_system(factors, model.item_factors)


def ease_system(train: pd.DataFrame, product_ids: np.ndarray, config: EvaluateConfig) -> System:
    """EASE (Steck, "Embarrassingly Shallow Autoencoders", WWW 2019): the item-item baseline that papers on
    MovieLens must beat. Closed form on the binary customer x product matrix X of the training events:
    ``P = (X^T X + l2 I)^-1``, ``B = I - P diag(1 / diag P)`` (so ``B_ii = 0``); a customer's scores are
    ``x_u B`` with ``x_u`` their binary history.

    Memory grows with products squared and time with products cubed, so on a catalogue larger than
    ``config.ease_max_products`` EASE is fitted on that many of the most interacted-with products only
    (the usual practice on large catalogues): it recommends only those, and the other products of a history
    do not count in its profile. Smaller catalogues (MovieLens, the default shop) get the full model.
    """
    kept = most_popular_rows(train, product_ids, config.ease_max_products)
    if len(kept) == len(product_ids):
        return _full_ease_system(train, product_ids, config)
    to_kept = np.full(len(product_ids), -1, np.int64)
    to_kept[kept] = np.arange(len(kept))
    return subset_system(_full_ease_system(train, product_ids[kept], config), to_kept, kept)


def _full_ease_system(train: pd.DataFrame, product_ids: np.ndarray, config: EvaluateConfig) -> System:
    matrix = interaction_matrix(train, product_ids, lambda w: np.ones(len(w), np.float32))
    matrix.data[:] = 1.0  # repeated interactions count once
    weights = ease_weights(matrix, config.ease_l2)

    def profiles(history: Histories, _: Histories) -> np.ndarray:
        binary = history_matrix(history, [np.ones(len(h), np.float32) for h in history], len(product_ids))
        binary.data[:] = 1.0
        return binary.toarray()

    return _factor_system(profiles, weights.T)


def most_popular_rows(train: pd.DataFrame, product_ids: np.ndarray, limit: int) -> np.ndarray:
    """Rows (ascending) of the ``limit`` products with the most training events (ties: the lower row);
    every row when the catalogue has no more than ``limit``."""
    if len(product_ids) <= limit:
        return np.arange(len(product_ids))
    counts = popularity_scores(train, product_ids)
    return np.sort(np.lexsort((np.arange(len(counts)), -counts))[:limit])


def ease_weights(matrix: csr_matrix, l2: float) -> np.ndarray:
    """EASE's item-item weights B [products, products] (float32) from a customer x product matrix.

    ``X^T X + l2 I`` is symmetric positive definite, so it is inverted through its Cholesky factor (LAPACK's
    potrf and potri: half the work of a general inverse), in place: at 20,000 products each square is 3.2 GB."""
    if not l2 > 0:
        raise ValueError(f"the EASE L2 strength must be positive, got {l2}")
    gram = dense_gram(matrix)
    gram[np.diag_indices_from(gram)] += l2
    factor, failed = lapack.dpotrf(gram, lower=True, overwrite_a=True)
    if failed:
        raise np.linalg.LinAlgError(f"X^T X + l2 I is not positive definite (potrf: {failed})")
    inverse, _ = lapack.dpotri(factor, lower=True, overwrite_c=True)  # valid in its lower triangle
    weights = _lower_mirrored(inverse)
    weights /= -np.diag(weights).copy()  # B = -P / diag(P), column by column
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def _lower_mirrored(square: np.ndarray, band: int = 512) -> np.ndarray:
    """``square`` made symmetric from its lower triangle, in place, a band of rows at a time (no full-size
    temporary)."""
    for start in range(0, len(square), band):
        stop = min(start + band, len(square))
        diagonal = np.tril(square[start:stop, start:stop])
        square[start:stop, start:stop] = diagonal + np.tril(diagonal, -1).T
        square[start:stop, stop:] = square[stop:, start:stop].T
    return square


def dense_gram(matrix: csr_matrix, rows_per_block: int = 4096) -> np.ndarray:
    """``X^T X`` of a 0/1 matrix as a dense float64 array, summed over blocks of customer rows made dense: a
    dense matrix product is several times faster than a sparse one whose result is dense anyway
    (MovieLens-1M: 0.6 against 3.5 s with the conversion), and the blocks bound the memory. Each block's
    float32 product is exact: its counts are at most ``rows_per_block``."""
    gram = np.zeros((matrix.shape[1], matrix.shape[1]), np.float64)
    for start in range(0, matrix.shape[0], rows_per_block):
        block = matrix[start:start + rows_per_block].toarray().astype(np.float32)
        gram += block.T @ block
    return gram


def recent_popularity_system(train: pd.DataFrame, product_ids: np.ndarray, half_life_days: float) -> System:
    """Popularity with every training event's weight halved every ``half_life_days`` before the last one:
    what is in demand at the split (the candidate's popularity prior alone ranks the same way)."""
    return popularity_system(recent_popularity(train, product_ids, half_life_days))


BASELINES = ("popularity", "recent_popularity", "ials", "ease")  # the systems the gate's lift check compares with


def popularity_scores(train_events: pd.DataFrame, product_ids: np.ndarray) -> np.ndarray:
    """Number of training events per product, aligned with ``product_ids``."""
    return train_events["product_id"].value_counts().reindex(product_ids, fill_value=0).to_numpy(np.float64)


def available_baselines(num_products: int, config: EvaluateConfig) -> tuple[str, ...]:
    """The :data:`BASELINES` the evaluation fits: all of them, EASE unless ``ease_max_products`` is 0."""
    del num_products  # every catalogue size gets every baseline (EASE on its most popular products)
    return tuple(name for name in BASELINES if name != "ease" or config.ease_max_products > 0)


def baseline_system(name: str, train: pd.DataFrame, product_ids: np.ndarray, config: EvaluateConfig) -> System:
    """The baseline ``name`` (one of :data:`BASELINES`) fitted on ``train`` with ``config``'s settings."""
    if name == "popularity":
        return popularity_system(popularity_scores(train, product_ids))
    if name == "recent_popularity":
        return recent_popularity_system(train, product_ids, config.recent_popularity_half_life_days)
    if name == "ials":
        return ials_system(train, product_ids, config)
    if name == "ease":
        return ease_system(train, product_ids, config)
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")


def baseline_systems(train: pd.DataFrame, product_ids: np.ndarray, config: EvaluateConfig) -> dict[str, System]:
    """Every baseline this catalogue gets (:func:`available_baselines`), with ``config``'s settings."""
    return {name: baseline_system(name, train, product_ids, config)
            for name in available_baselines(len(product_ids), config)}


def interaction_matrix(train: pd.DataFrame, product_ids: np.ndarray,
                       values: Callable[[np.ndarray], np.ndarray]) -> csr_matrix:
    """Customers x ``product_ids`` CSR of the training events (``values`` of their weights; repeats add up).
    Events of products outside ``product_ids`` are dropped; rows are the customers in sorted id order."""
    rows = pd.Index(product_ids).get_indexer(train["product_id"])
    known = rows >= 0
    customer_rows, customers = pd.factorize(train["customer_id"].to_numpy()[known], sort=True)
    return csr_matrix((values(train["weight"].to_numpy(np.float32)[known]), (customer_rows, rows[known])),
                      shape=(len(customers), len(product_ids)))


def history_matrix(history: Histories, values: Histories, num_products: int) -> csr_matrix:
    """One CSR row per history, ``values`` at its product rows (repeats add up)."""
    data = np.concatenate(values) if history else []
    indptr = np.r_[0, np.cumsum([len(h) for h in history])]
    matrix = csr_matrix((data, np.concatenate(history) if history else [], indptr),
                        shape=(len(history), num_products))
    matrix.sum_duplicates()
    return matrix


def _factor_system(customer_factors: Callable[[Histories, Histories], np.ndarray], item_factors: np.ndarray) -> System:
    """Rank by ``customer_factors(history, weights) . item_factors[i]``, each customer's history excluded."""
    def rank(history: Histories, weights: Histories, k: int) -> np.ndarray:
        parts = []
        for s in range(0, len(history), BATCH):
            users = customer_factors(history[s : s + BATCH], weights[s : s + BATCH])
            parts.append(ops.rank_candidates(users, item_factors, k, padded(history[s : s + BATCH]))[0])
        return np.concatenate(parts) if parts else np.zeros((0, k), np.int64)

    def score(history: Histories, weights: Histories, rows: Histories) -> Histories:
        """Every product scored by one matrix product per batch, then each customer's ``rows`` picked: EASE's
        item factors are a transposed view, whose rows gathered one customer at a time cost a strided read
        of the whole matrix each."""
        scored: list[np.ndarray] = []
        for s in range(0, len(history), BATCH):
            every = customer_factors(history[s : s + BATCH], weights[s : s + BATCH]) @ item_factors.T
            scored += [products[r] for products, r in zip(every, rows[s : s + BATCH], strict=True)]
        return scored

    return System(rank, score)


def published_system(published: ServedVersion, product_ids: np.ndarray, dtype: str = "float32",
                     in_context: Callable[[np.ndarray], np.ndarray] | None = None) -> System:
    """The published version's embeddings, translating product rows by product id both ways (``in_context``:
    as for :func:`embedding_system`).

    Products it does not know count neither in its customer vectors nor among its results (they score
    -inf), which is exactly what serving it would do.
    """
    to_published = ops.lookup_rows({pid: row for row, pid in enumerate(published.product_ids)}, product_ids)
    to_current = ops.lookup_rows({pid: row for row, pid in enumerate(product_ids)}, published.product_ids)
    return subset_system(embedding_system(published.embeddings, published.prior, dtype, in_context),
                         to_published, to_current)


def subset_system(inner: System, to_inner: np.ndarray, to_outer: np.ndarray) -> System:
    """A system over its own list of products, seen from the whole catalogue. ``to_inner[row]``: a catalogue
    row's row in ``inner`` (-1: unknown to it); ``to_outer``: the way back. Products it does not know count
    neither in its histories nor among its results (they score -inf)."""
    def translate(history: Histories, weights: Histories) -> tuple[Histories, Histories]:
        kept = [to_inner[h] >= 0 for h in history]
        return ([to_inner[h][keep] for h, keep in zip(history, kept, strict=True)],
                [w[keep] for w, keep in zip(weights, kept, strict=True)])

    def rank(history: Histories, weights: Histories, k: int) -> np.ndarray:
        return to_outer[inner.rank(*translate(history, weights), k)]

    def score(history: Histories, weights: Histories, rows: Histories) -> Histories:
        mapped = [to_inner[r] for r in rows]
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
