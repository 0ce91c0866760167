"""The device table's chunked top-k, run with numpy as its array module: chunk widths, the candidates and
bound by hand, and the rows whose exactness needs their whole row (a tie with another chunk)."""

from __future__ import annotations

import numpy as np
import pytest

from fashionrec.contract.device import DEVICE_TOP_K_MARGIN, DeviceTable, chunk_columns


@pytest.mark.parametrize(("products", "k", "chunk"), [
    (1_000_000, 20, 256),  # sqrt(50,000) = 224 -> 2^8
    (100_000, 20, 64),  # sqrt(5,000) = 71 -> 2^6
    (3_000, 10, 32),  # sqrt(300) = 17 -> 2^4, raised to the floor of 32
    (10, 5, 32),
])
def test_a_chunk_is_the_power_of_two_nearest_the_square_root_of_products_per_k(products: int, k: int,
                                                                                 chunk: int) -> None:
    assert chunk_columns(products, k) == chunk


def _scores_table(values: np.ndarray) -> DeviceTable:
    """A one-dimensional table whose logits for the query [1] are ``values``."""
    return DeviceTable(values.reshape(-1, 1).astype(np.float32), np.zeros(len(values), np.float32), np, 0)


def _four_chunks(**peaks: float) -> np.ndarray:
    """128 products (4 chunks of 32 at k = 2), every logit -1 but ``c<column>=value``."""
    values = np.full(128, -1.0)
    for name, value in peaks.items():
        values[int(name[1:])] = value
    return values


def test_the_k_chunks_with_the_largest_maxima_are_the_candidates_and_the_next_maximum_is_the_bound() -> None:
    table = _scores_table(_four_chunks(c5=10, c6=9, c40=8, c70=7, c100=1))
    scores = table.scores(np.ones((1, 1)), chunk_columns(128, 2))
    rows, logits, bounds = table.candidates(scores, 2, chunk_columns(128, 2))
    # chunks 0 (max 10) and 1 (max 8) are the candidates; chunk 2's max, 7, bounds everything else
    assert rows.shape == (1, 2 + DEVICE_TOP_K_MARGIN)
    assert rows[0, :3].tolist() == [5, 6, 40] and logits[0, :3].tolist() == [10, 9, 8]
    assert bounds.tolist() == [7]
    [(best, best_logits)] = table.best(np.ones((1, 1)), [np.zeros(0, np.int64)], 2)
    assert best.tolist() == [5, 6] and best_logits.tolist() == [10, 9]


def test_a_k_th_logit_tied_by_another_chunk_is_ranked_from_the_whole_row_so_the_lower_row_wins() -> None:
    # chunk 1 (max 10) is a candidate; chunks 0 and 2 tie for the second place at 9, so either may be the
    # candidate: the k-th logit equals the bound, and the whole row puts row 3 before row 70.
    table = _scores_table(_four_chunks(c3=9, c40=10, c70=9))
    [(best, logits)] = table.best(np.ones((1, 1)), [np.zeros(0, np.int64)], 2)
    assert best.tolist() == [40, 3] and logits.tolist() == [10, 9]


def test_an_excluded_maximum_leaves_its_chunk_with_the_next_best_row() -> None:
    table = _scores_table(_four_chunks(c5=10, c6=9, c40=8, c70=7))
    [(best, _), (unexcluded, _)] = table.best(np.ones((2, 1)), [np.array([5, 40, -1]), np.zeros(0, np.int64)], 2)
    assert best.tolist() == [6, 70]  # chunk 0's max is now 9, chunk 1's is -1: chunk 2 (7) is a candidate
    assert unexcluded.tolist() == [5, 6]


def test_padding_past_the_catalogue_is_never_returned() -> None:
    # 40 products pad to 64 columns (2 chunks of 32, fewer than k + 1: every column is a candidate)
    table = _scores_table(np.arange(40, dtype=np.float64) - 100)
    [(best, logits)] = table.best(np.ones((1, 1)), [np.arange(0, 40, 2)], 30)
    assert best.tolist() == list(range(39, 0, -2))  # the 20 odd rows left, best first; never a padded column
    assert np.isfinite(logits).all()


def _fetched(rows: list[int], logits: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(rows, np.int64), np.array(logits, np.float32)


def test_fetched_candidates_whose_k_th_equals_the_bound_are_replaced_by_the_whole_rows_top_k() -> None:
    scores = np.array([[9.0, 3.0, 10.0, 9.0, 1.0]], np.float32)
    table = _scores_table(scores[0])
    # the candidates missed row 0 (it sat in a chunk outside them, at the bound 9)
    best, logits = table.exact(scores, 0, *_fetched([2, 3, 1], [10, 9, 3]), bound=9.0, k=2)
    assert best.tolist() == [2, 0] and logits.tolist() == [10, 9]
    best, _ = table.exact(scores, 0, *_fetched([2, 3, 1], [10, 9, 3]), bound=8.5, k=2)
    assert best.tolist() == [2, 3]  # the k-th beats the bound: the candidates are proof enough


def test_fetched_candidates_tied_to_the_last_are_replaced_by_the_whole_rows_top_k() -> None:
    scores = np.array([[5.0, 5.0, 5.0, 5.0, 5.0]], np.float32)
    table = _scores_table(scores[0])
    # every candidate fetched ties the k-th: an equal, lower row may not have been fetched
    best, _ = table.exact(scores, 0, *_fetched([4, 3, 2], [5, 5, 5]), bound=-np.inf, k=2)
    assert best.tolist() == [0, 1]
    best, _ = table.exact(scores, 0, *_fetched([4, 3, 2], [5, 5, 4]), bound=-np.inf, k=2)
    assert best.tolist() == [3, 4]  # the last fetched is worse than the k-th: no tie hides beyond

