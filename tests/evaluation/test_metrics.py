import numpy as np
import pytest
from hypothesis import given, strategies as st

from fashionrec.evaluation import metrics

RANKED = np.array([[1, 2, 3], [4, 5, 6]])
TARGETS = [np.array([2, 9]), np.array([7])]


def test_hits_recall_ndcg_mrr_on_a_hand_computed_case():
    hits = metrics.hit_matrix(RANKED, TARGETS)
    assert hits.tolist() == [[False, True, False], [False, False, False]]
    sizes = np.array([2, 1])
    assert metrics.recall_at_k(hits, sizes, 3).tolist() == [0.5, 0.0]
    # customer 0: DCG = 1/log2(3); ideal with min(3, 2) = 2 hits = 1 + 1/log2(3)
    expected = (1 / np.log2(3)) / (1 + 1 / np.log2(3))
    assert metrics.ndcg_at_k(hits, sizes, 3) == pytest.approx([expected, 0.0])
    assert metrics.reciprocal_rank(hits).tolist() == [0.5, 0.0]


def test_recall_at_smaller_k_ignores_later_ranks():
    hits = metrics.hit_matrix(RANKED, TARGETS)
    assert metrics.recall_at_k(hits, np.array([2, 1]), 1).tolist() == [0.0, 0.0]


def test_perfect_ranking_has_ndcg_one():
    hits = metrics.hit_matrix(np.array([[3, 1, 8]]), [np.array([1, 3])])
    assert metrics.ndcg_at_k(hits, np.array([2]), 3) == pytest.approx([1.0])


def test_coverage_counts_distinct_products_in_the_top_k():
    assert metrics.catalogue_coverage(RANKED, 2, num_products=10) == pytest.approx(0.4)


def test_summary_names_metrics_by_k():
    summary = metrics.summarise(RANKED, TARGETS, ks=(1, 3), num_products=10)
    assert summary["recall@3"] == pytest.approx(0.25)
    assert summary["mrr"] == pytest.approx(0.25)
    assert summary["customers"] == 2


def test_precision_divides_hits_by_k():
    hits = metrics.hit_matrix(RANKED, TARGETS)
    assert metrics.precision_at_k(hits, 2).tolist() == [0.5, 0.0]


def test_popularity_percentile_of_recommendations():
    popularity = np.array([5.0, 1.0, 3.0, 9.0])  # percentiles: 0.667, 0, 0.333, 1
    ranked = np.array([[3, 0], [1, 2]])
    assert metrics.popularity_percentile(ranked, 2, popularity) == pytest.approx([(1 + 2 / 3) / 2, (0 + 1 / 3) / 2])


def test_per_customer_values_average_to_the_summary():
    values = metrics.per_customer(RANKED, TARGETS, ks=(3,))
    assert values["recall@3"].tolist() == [0.5, 0.0]
    assert values["precision@3"] == pytest.approx([1 / 3, 0.0])


def test_sampled_auc_counts_wins_and_half_ties():
    positive = [np.array([0.9, 0.2]), np.array([0.5]), np.array([])]
    negative = [np.array([0.1, 0.5]), np.array([0.5, 0.4]), np.array([0.3])]
    # customer 0: pairs (0.9>0.1, 0.9>0.5, 0.2>0.1, 0.2<0.5) = 3/4; customer 1: tie 0.5 + win = 0.75
    auc = metrics.sampled_auc(positive, negative)
    assert auc[:2] == pytest.approx([0.75, 0.75])
    assert np.isnan(auc[2])


def test_metric_names_are_the_keys_of_the_per_customer_metrics():
    values = metrics.per_customer(np.array([[1, 2]]), [np.array([2])], (1, 2))
    assert metrics.metric_names((1, 2)) == tuple(values)


@given(st.lists(st.tuples(st.lists(st.integers(-3, 40), min_size=4, max_size=4),
                          st.lists(st.integers(-3, 40), max_size=6)), max_size=8))
def test_the_hit_matrix_is_each_rows_membership_in_its_own_targets(customers):
    ranked = np.array([row for row, _ in customers], np.int64).reshape(len(customers), 4)
    targets = [np.array(t, np.int64) for _, t in customers]
    expected = np.array([np.isin(row, t) for row, t in zip(ranked, targets)], bool).reshape(ranked.shape)
    np.testing.assert_array_equal(metrics.hit_matrix(ranked, targets), expected)


def test_the_hit_matrix_needs_one_target_list_per_ranked_row():
    with pytest.raises(ValueError, match="2 ranked rows but 1 target lists"):
        metrics.hit_matrix(RANKED, TARGETS[:1])
