"""The serving maths on tiny arrays whose answers were worked out by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fashionrec.contract import ops

TABLE = np.array([[1, 0], [0, 1], [1, 1], [-1, 0]], dtype=np.float32)


def test_customer_vector_is_weighted_mean_of_known_rows() -> None:
    # (1*[1,0] + 3*[1,1]) / (1+3); the unknown row (-1) and its weight 5 are ignored.
    vector = ops.customer_vector(TABLE, np.array([0, 2, -1]), np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(vector, [1.0, 0.75])
    assert vector.dtype == np.float32


@pytest.mark.parametrize(
    "rows, weights",
    [([], []), ([-1, -1], [1.0, 2.0]), ([0, 1], [0.0, 0.0])],
    ids=["empty", "all-unknown", "zero-weight"],
)
def test_customer_vector_without_usable_history_is_zero(rows: list[int], weights: list[float]) -> None:
    vector = ops.customer_vector(TABLE, np.array(rows, dtype=np.int64), np.array(weights))
    np.testing.assert_array_equal(vector, np.zeros(2, dtype=np.float32))


def test_customer_vector_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 history rows but 1 weights"):
        ops.customer_vector(TABLE, np.array([0, 1]), np.array([1.0]))


def test_lookup_rows_marks_unknown_ids() -> None:
    index = {b"P1": 0, b"P2": 1}
    np.testing.assert_array_equal(ops.lookup_rows(index, [b"P2", b"nope", b"P1"]), [1, -1, 0])
    assert ops.lookup_rows(index, []).shape == (0,)


def test_rank_candidates_orders_by_dot_product_with_sigmoid_scores() -> None:
    # dots with [2, 1]: [2, 1, 3, -2] -> rows 2, 0, 1; with [0, 1]: [0, 1, 1, 0] -> rows 1, 2 (tie: lower row).
    rows, scores = ops.rank_candidates(np.array([[2, 1], [0, 1]], dtype=np.float32), TABLE, 3)
    np.testing.assert_array_equal(rows, [[2, 0, 1], [1, 2, 0]])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    np.testing.assert_allclose(scores, [[sig(3), sig(2), sig(1)], [sig(1), sig(1), sig(0)]], rtol=1e-6)
    assert scores.dtype == np.float32


def test_ties_at_the_top_k_boundary_take_the_lowest_rows() -> None:
    table = np.array([[0, 1], [1, 0], [1, 0], [1, 0], [1, 0]], dtype=np.float32)
    rows, _ = ops.rank_candidates(np.array([[1, 0]], dtype=np.float32), table, 2)
    np.testing.assert_array_equal(rows, [[1, 2]])


def test_zero_customer_vector_scores_one_half_in_catalogue_order() -> None:
    rows, scores = ops.rank_candidates(np.zeros((1, 2), np.float32), TABLE, 3)
    np.testing.assert_array_equal(rows, [[0, 1, 2]])
    np.testing.assert_array_equal(scores, [[0.5, 0.5, 0.5]])


def test_k_larger_than_catalogue_returns_every_product() -> None:
    rows, _ = ops.rank_candidates(np.array([[2, 1]], dtype=np.float32), TABLE, 10)
    np.testing.assert_array_equal(rows, [[2, 0, 1, 3]])


def test_excluded_rows_are_never_returned() -> None:
    # Row 0 excludes [2] (padding -1 ignored), row 1 excludes [1, 2]: at most 4 - 2 = 2 products each.
    vectors = np.array([[2, 1], [0, 1]], dtype=np.float32)
    rows, scores = ops.rank_candidates(vectors, TABLE, 3, exclude_rows=np.array([[2, -1], [1, 2]]))
    np.testing.assert_array_equal(rows, [[0, 1], [0, 3]])
    np.testing.assert_allclose(scores[0], [1 / (1 + np.exp(-2)), 1 / (1 + np.exp(-1))], rtol=1e-6)


def test_rank_candidates_rejects_non_positive_k() -> None:
    with pytest.raises(ValueError, match="positive"):
        ops.rank_candidates(np.ones((1, 2), np.float32), TABLE, 0)


def test_sigmoid_saturates_without_overflow_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(ops.sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


@settings(max_examples=60, deadline=None)
@given(
    table=arrays(np.float32, st.tuples(st.integers(1, 12), st.just(3)), elements=st.integers(-2, 2)),
    vectors=arrays(np.float32, st.tuples(st.integers(1, 4), st.just(3)), elements=st.integers(-2, 2)),
    k=st.integers(1, 15),
)
def test_rank_candidates_equals_a_full_sort(table: np.ndarray, vectors: np.ndarray, k: int) -> None:
    """Small integer values make ties common: the partition must agree with a full stable sort."""
    rows, _ = ops.rank_candidates(vectors, table, k)
    dots = vectors @ table.T
    expected = np.argsort(-dots, axis=1, kind="stable")[:, : min(k, len(table))]
    np.testing.assert_array_equal(rows, expected)


@settings(max_examples=60, deadline=None)
@given(
    table=arrays(np.float32, st.tuples(st.integers(2, 12), st.just(2)), elements=st.integers(-2, 2)),
    vectors=arrays(np.float32, st.tuples(st.integers(1, 3), st.just(2)), elements=st.integers(-2, 2)),
    excluded=st.lists(st.integers(-1, 11), min_size=1, max_size=4),
    k=st.integers(1, 12),
)
def test_exclusion_equals_sorting_the_remaining_products(table: np.ndarray, vectors: np.ndarray,
                                                         excluded: list[int], k: int) -> None:
    """Every customer excludes the same rows here, so each keeps exactly N - |excluded| candidates."""
    excluded = [row if row < len(table) else -1 for row in excluded]
    exclude_rows = np.tile(excluded, (len(vectors), 1))
    rows, _ = ops.rank_candidates(vectors, table, k, exclude_rows=exclude_rows)
    dots = (vectors @ table.T).astype(np.float64)
    dots[:, [row for row in excluded if row >= 0]] = -np.inf
    remaining = len(table) - len({row for row in excluded if row >= 0})
    expected = np.argsort(-dots, axis=1, kind="stable")[:, : min(k, remaining)]
    np.testing.assert_array_equal(rows, expected)


def test_fp16_table_scores_stay_close_to_fp32() -> None:
    from fashionrec.contract.scoring import FP16_BLOCK_ROWS, ScoringTable

    rng = np.random.default_rng(0)
    table = rng.normal(size=(FP16_BLOCK_ROWS + 100, 16)).astype(np.float32)  # more than one fp16 block
    vectors = rng.normal(size=(3, 16)).astype(np.float32)
    exact = ScoringTable(table).scores(vectors)
    half = ScoringTable(table, "float16").scores(vectors)
    assert half.dtype == np.float32 and half.shape == exact.shape
    np.testing.assert_allclose(half, exact, atol=2e-2 * np.abs(exact).max())
    top = [set(ops.top_k_positions(row, 10)) for row in exact]
    assert np.mean([len(t & set(ops.top_k_positions(row, 10))) for t, row in zip(top, half, strict=True)]) >= 8
    rows = np.array([5, 2, 9])
    np.testing.assert_allclose(ScoringTable(table).scores_of(vectors[0], rows), table[rows] @ vectors[0], rtol=1e-6)
    with pytest.raises(ValueError, match="table_dtype"):
        ScoringTable(table, "int8")


def test_rank_candidates_adds_the_prior_to_each_products_logit() -> None:
    table = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    rows, scores = ops.rank_candidates(np.array([[1.0, 0.0]]), table, 3, prior=np.array([0.0, 2.0, 0.0]))
    assert rows.tolist() == [[1, 0, 2]]  # logits 1, 2, 0.5
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-np.array([[2.0, 1.0, 0.5]]))), rtol=1e-6)


# -- a whole seen-history: pooled over the window, every product of it excluded ----------------------
@pytest.mark.parametrize("num_events, window, pooled", [(5, 2, (3, 5)), (5, 0, (0, 5)), (2, 5, (0, 2)), (0, 3, (0, 0))],
                         ids=["longer", "no-window", "shorter", "empty"])
def test_pooling_window_is_the_last_window_events(num_events: int, window: int, pooled: tuple[int, int]) -> None:
    assert (ops.pooling_window(num_events, window).start, ops.pooling_window(num_events, window).stop) == pooled
    with pytest.raises(ValueError, match="window"):
        ops.pooling_window(3, -1)


def test_pooling_only_the_window_gives_the_whole_historys_vector() -> None:
    rng = np.random.default_rng(0)
    table = rng.normal(size=(50, 4)).astype(np.float32)
    rows = rng.integers(-1, 50, 300)  # -1: ids unknown to the catalogue
    weights = ops.history_weights(rng.uniform(0.5, 3, 300), rng.uniform(0, 20, 300), "recency", 7.0, 5.0, window=20)
    window = ops.pooling_window(300, 20)
    assert not weights[:280].any()
    np.testing.assert_allclose(ops.customer_vector(table, rows[window], weights[window]),
                               ops.customer_vector(table, rows, weights), rtol=1e-6)


@pytest.mark.parametrize("candidates", [None, np.array([7, 3, 0, 9, 4])], ids=["catalogue", "candidates"])
def test_blocked_positions_mark_each_excluded_product_once(candidates: np.ndarray | None) -> None:
    excluded = np.array([3, -1, 9, 3, 3, 8, -1])  # repeats (a product seen many times) and unknown ids
    expected = [3, 8, 9] if candidates is None else [1, 3]  # catalogue rows; or positions of 3 and 9 in candidates
    np.testing.assert_array_equal(ops.blocked_positions(excluded, candidates, 10), expected)
    assert ops.blocked_positions(np.array([-1]), candidates, 10).size == 0


def test_rank_positions_with_a_long_repeated_exclusion() -> None:
    # 10 products scored 9..0 (row 0 best); a seen-history of 1,000 events over rows 0, 2 and 4 only
    dots = np.arange(10, 0, -1, dtype=np.float32)
    seen = np.tile([0, 2, 4, -1], 250)
    np.testing.assert_array_equal(ops.rank_positions(dots, None, seen, 4), [1, 3, 5, 6])
    np.testing.assert_array_equal(ops.rank_positions(dots, None, seen, 20), [1, 3, 5, 6, 7, 8, 9])  # 10 - 3 left
    candidates = np.array([4, 8, 2, 6])  # candidate order; 4 and 2 were seen
    np.testing.assert_array_equal(ops.rank_positions(dots[candidates], candidates, seen, 3), [3, 1])


@settings(max_examples=80, deadline=None)
@given(
    dots=arrays(np.float32, st.integers(1, 30), elements=st.integers(-3, 3)),
    excluded=st.lists(st.integers(-1, 29), max_size=60),
    restrict=st.booleans(),
    k=st.integers(1, 35),
)
def test_rank_positions_equals_a_stable_sort_of_what_is_not_excluded(dots: np.ndarray, excluded: list[int],
                                                                     restrict: bool, k: int) -> None:
    """Ties are common (small integers) and exclusions repeat, as in a long seen-history."""
    rng = np.random.default_rng(len(excluded))
    catalogue = 30
    candidates = rng.permutation(catalogue)[:dots.size] if restrict else None
    rows = np.arange(dots.size) if candidates is None else candidates
    if candidates is None:
        excluded = [row for row in excluded if row < dots.size]
    kept = [pos for pos in np.argsort(-dots.astype(np.float64), kind="stable") if rows[pos] not in set(excluded)]
    got = ops.rank_positions(dots, candidates, np.array(excluded, dtype=np.int64), k)
    np.testing.assert_array_equal(got, kept[:k])
