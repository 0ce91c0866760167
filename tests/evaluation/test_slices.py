import numpy as np

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation.slices import holdout_slices
from fashionrec.model.features import EvalExamples

EXAMPLES = EvalExamples(
    customer_ids=np.array(["a", "b", "c"]),
    history_idx=[np.array([0, 1, 2, 3]), np.array([4]), np.array([0, 5, 6, 7])],
    history_weight=[np.ones(4), np.ones(1), np.ones(4)],
    history_age_days=[np.zeros(4), np.zeros(1), np.zeros(4)],
    target_idxs=[np.array([8, 1]), np.array([9]), np.array([2])],
)
IS_NEW = np.zeros(10, bool)
IS_NEW[[8, 9]] = True
CATEGORIES = np.array(["dress"] * 5 + ["coat"] * 5)
POPULARITY = np.arange(10, dtype=float)  # product 9 is the most popular, 0 the least


def _by_name():
    found = holdout_slices(EXAMPLES, IS_NEW, CATEGORIES, POPULARITY, EvaluateConfig(new_customer_max_history=1))
    return {s.name: s for s in found}


def test_cold_start_slice_keeps_only_new_targets_of_customers_that_have_them():
    cold = _by_name()["cold_start_products"]
    assert cold.customers.tolist() == [0, 1]
    assert [t.tolist() for t in cold.targets] == [[8], [9]]


def test_new_customers_are_those_with_short_histories():
    assert _by_name()["new_customers"].customers.tolist() == [1]


def test_category_and_popularity_slices():
    slices = _by_name()
    assert [t.tolist() for t in slices["category:dress"].targets] == [[1], [2]]
    assert [t.tolist() for t in slices["category:coat"].targets] == [[8], [9]]
    assert slices["popularity:head"].customers.tolist() == [1]  # product 9 alone is in the top 10 %
    assert [t.tolist() for t in slices["popularity:tail"].targets] == [[1], [2]]


def test_context_slices_group_customers_by_their_first_holdout_events_context():
    from dataclasses import replace

    from fashionrec.evaluation.slices import context_slices

    examples = replace(EXAMPLES, context={"device": np.array(["mobile", "", "mobile"], object),
                                          "region": np.array(["GB", "SE", ""], object),
                                          "hour": np.array([20, 7, -1]), "weekday": np.array([5, 0, -1])})
    found = {s.name: s.customers.tolist() for s in context_slices(examples)}
    # unknown values ("" and -1) make no slice; empty dayparts are left out
    assert found == {"device:mobile": [0, 2], "region:GB": [0], "region:SE": [1], "daypart:morning": [1],
                     "daypart:evening": [0]}
    assert context_slices(EXAMPLES) == []  # a holdout without context
