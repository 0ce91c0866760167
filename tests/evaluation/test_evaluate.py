"""The standard protocol: what a customer interacted with in training is never recommended nor counted."""

import numpy as np
import pytest

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation import metrics
from fashionrec.evaluation.holdout import sample_customers
from fashionrec.evaluation.systems import popularity_system
from fashionrec.model.features import EvalExamples

# Customer A interacted with products 0-5 in training (oldest first); the model's window is the last 2 (4, 5).
# In the test period A came back to product 1 (outside the window) and to product 6. Customer B came back
# only to product 3, which is in their window: under either protocol B has nothing new and is dropped.
EXAMPLES = EvalExamples(
    customer_ids=np.array(["A", "B"]),
    history_idx=[np.arange(6), np.array([2, 3])],
    history_weight=[np.ones(6, np.float32), np.ones(2, np.float32)],
    history_age_days=[np.arange(6, 0, -1).astype(np.float32), np.ones(2, np.float32)],
    target_idxs=[np.array([1, 6]), np.array([3])],
)
POPULARITY = np.array([10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0])  # product 0 most popular, then 1, ...


def test_all_seen_excludes_every_training_interaction_from_the_ranking_and_the_relevant_set():
    holdout = sample_customers(EXAMPLES, EvaluateConfig(exclude="all_seen"), window=2)
    assert holdout.customer_ids.tolist() == ["A"]
    np.testing.assert_array_equal(holdout.history_idx[0], np.arange(6))  # the whole history, not the window
    np.testing.assert_array_equal(holdout.target_idxs[0], [6])  # product 1 was seen: not relevant
    ranked = popularity_system(POPULARITY).rank(holdout.history_idx, holdout.history_weight, 2)
    assert ranked.tolist() == [[6, 7]]  # nothing seen comes back
    values = metrics.per_customer(ranked, holdout.target_idxs, (1, 2))
    assert values["recall@1"].tolist() == [1.0] and values["mrr"].tolist() == [1.0]


def test_the_window_protocol_recommends_older_interactions_again_and_counts_them():
    holdout = sample_customers(EXAMPLES, EvaluateConfig(exclude="window"), window=2)
    assert holdout.customer_ids.tolist() == ["A"]
    np.testing.assert_array_equal(holdout.history_idx[0], [4, 5])
    np.testing.assert_array_equal(holdout.target_idxs[0], [1, 6])  # product 1, seen long ago, is a target again
    ranked = popularity_system(POPULARITY).rank(holdout.history_idx, holdout.history_weight, 2)
    assert ranked.tolist() == [[0, 1]]  # products seen before the window are recommended again
    values = metrics.per_customer(ranked, holdout.target_idxs, (2,))
    assert values["recall@2"].tolist() == [0.5]  # ... and a re-watch counts as a hit


def test_customers_without_a_training_event_are_scored_only_when_asked():
    from dataclasses import replace

    with_new = replace(EXAMPLES, customer_ids=np.array(["A", "B", "N"]),
                       history_idx=EXAMPLES.history_idx + [np.zeros(0, np.int64)],
                       history_weight=EXAMPLES.history_weight + [np.zeros(0, np.float32)],
                       history_age_days=EXAMPLES.history_age_days + [np.zeros(0, np.float32)],
                       target_idxs=EXAMPLES.target_idxs + [np.array([2])])
    assert sample_customers(with_new, EvaluateConfig(), window=2).customer_ids.tolist() == ["A"]
    everyone = EvaluateConfig(customers_with_history_only=False)
    assert sample_customers(with_new, everyone, window=2).customer_ids.tolist() == ["A", "N"]


def test_an_unknown_exclusion_protocol_is_refused():
    with pytest.raises(ValueError, match="all_seen"):
        sample_customers(EXAMPLES, EvaluateConfig(exclude="recent"), window=2)
