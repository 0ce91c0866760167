import numpy as np
import pandas as pd

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation.systems import embedding_system, ials_system, popularity_system, published_system
from fashionrec.repository.served import ServedVersion

PRODUCTS = np.array([f"P{i}" for i in range(10)])


def test_popularity_ranks_best_sellers_first_skipping_the_history():
    system = popularity_system(np.array([5.0, 9.0, 1.0, 7.0]))
    assert system.rank([np.array([1])], [np.ones(1)], 2).tolist() == [[3, 0]]


def test_ials_learns_which_products_go_together():
    # customers 0-19 buy three times from products 0-4, customers 20-39 from products 5-9: two factors
    rng = np.random.default_rng(0)
    rows = [(f"C{c}", PRODUCTS[rng.integers(0, 5) + (5 if c >= 20 else 0)]) for c in range(40) for _ in range(3)]
    train = pd.DataFrame(rows, columns=["customer_id", "product_id"]).assign(weight=1.0)
    system = ials_system(train, PRODUCTS, EvaluateConfig(ials_factors=2, ials_iterations=15))
    ranked = system.rank([np.array([6, 7])], [np.ones(2)], 3)[0]
    assert set(ranked) <= {5, 8, 9}  # the other group's products, never the history
    scores = system.score([np.array([6, 7])], [np.ones(2)], [np.array([5, 0])])[0]
    assert scores[0] > scores[1]


def test_published_model_ranks_by_product_id_whatever_its_row_order():
    table = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    order = np.array([3, 0, 9, 1, 2, 8, 7, 5, 4])  # the published version lacks P6 and stores rows shuffled
    published = ServedVersion(1, list(PRODUCTS[order]), table[order])
    history, weights = [np.array([2, 6])], [np.ones(2)]  # P6 is unknown to it and ignored
    got = published_system(published, PRODUCTS).rank(history, weights, 4)
    known = np.setdiff1d(np.arange(10), [6])
    expected = embedding_system(table[known]).rank([np.array([np.flatnonzero(known == 2)[0]])], [np.ones(1)], 4)
    assert got.tolist() == [known[expected[0]].tolist()]


def test_embedding_system_adds_the_popularity_prior_and_ranks_an_empty_history_by_it_alone():
    table = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    system = embedding_system(table, prior=np.array([0.0, 2.0, 0.3], np.float32))
    # history [0] -> customer vector [1, 0]: logits 1 (excluded), 0 + 2, 0.5 + 0.3
    assert system.rank([np.array([0])], [np.ones(1)], 2).tolist() == [[1, 2]]
    np.testing.assert_allclose(system.score([np.array([0])], [np.ones(1)], [np.array([1, 2])])[0], [2.0, 0.8], rtol=1e-6)
    assert system.rank([np.array([], np.int64)], [np.ones(0)], 3).tolist() == [[1, 2, 0]]  # zero vector: prior


def test_embedding_system_ranks_with_the_served_tables_precision():
    # fp16 keeps 10 bits of mantissa: 1.0004 rounds to 1.0, so in a half-precision table products 0 and 1 tie
    # (the lower row wins), while float32 puts product 1 first. History [2] -> customer vector [1, 0].
    table = np.array([[1.0, 0.0], [1.0004, 0.0], [1.0, 0.0], [0.0, 1.0]], np.float32)
    history, weights = [np.array([2])], [np.ones(1)]
    assert embedding_system(table).rank(history, weights, 2).tolist() == [[1, 0]]
    assert embedding_system(table, dtype="float16").rank(history, weights, 2).tolist() == [[0, 1]]
    half = embedding_system(table, dtype="float16").score(history, weights, [np.array([0, 1])])[0]
    assert half[0] == half[1] == 1.0


def test_published_model_ranks_with_its_own_popularity_prior():
    table = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    prior = np.linspace(0.0, 3.0, 10).astype(np.float32)  # strong enough to reorder
    published = ServedVersion(1, list(PRODUCTS), table, prior)
    history, weights = [np.array([0, 1])], [np.ones(2)]
    expected = embedding_system(table, prior).rank(history, weights, 5)
    assert published_system(published, PRODUCTS).rank(history, weights, 5).tolist() == expected.tolist()
    assert expected.tolist() != embedding_system(table).rank(history, weights, 5).tolist()


def _events(pairs, weights=None):
    frame = pd.DataFrame(pairs, columns=["customer_id", "product_id"])
    return frame.assign(weight=1.0 if weights is None else np.asarray(weights, float))


def test_ease_weights_match_the_closed_form_on_a_hand_computed_gram_matrix():
    # X = [[1, 1, 0], [1, 0, 1]]: X^T X = [[2, 1, 1], [1, 1, 0], [1, 0, 1]]; + 1 I = [[3, 1, 1], [1, 2, 0], [1, 0, 2]]
    # its inverse is [[4, -2, -2], [-2, 5, 1], [-2, 1, 5]] / 12, so B_ij = -P_ij / P_jj:
    # B_01 = 2/5, B_02 = 2/5, B_10 = 2/4, B_12 = -1/5, B_20 = 2/4, B_21 = -1/5, diagonal 0
    from scipy.sparse import csr_matrix

    from fashionrec.evaluation.systems import ease_weights

    weights = ease_weights(csr_matrix(np.array([[1, 1, 0], [1, 0, 1]], np.float32)), l2=1.0)
    np.testing.assert_allclose(weights, [[0, 0.4, 0.4], [0.5, 0, -0.2], [0.5, -0.2, 0]], atol=1e-6)


def test_the_dense_gram_sums_its_blocks_of_customers_exactly():
    from scipy.sparse import csr_matrix

    from fashionrec.evaluation.systems import dense_gram

    x = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [0, 0, 1]], np.float32)
    # X^T X by hand: column sums on the diagonal, co-occurrences off it
    expected = [[3, 2, 2], [2, 3, 2], [2, 2, 4]]
    for rows_per_block in (1, 2, 5, 8):  # one customer a block, a partial last block, one block, a larger block
        gram = dense_gram(csr_matrix(x), rows_per_block)
        assert gram.dtype == np.float64 and gram.tolist() == expected


def test_a_lower_triangle_is_mirrored_in_place_band_by_band():
    from fashionrec.evaluation.systems import _lower_mirrored

    square = np.array([[1.0, 9, 9], [2, 3, 9], [4, 5, 6]])  # 9: whatever the upper triangle held
    for band in (1, 2, 3, 4):
        mirrored = _lower_mirrored(square.copy(), band)
        assert mirrored.tolist() == [[1, 2, 4], [2, 3, 5], [4, 5, 6]]
    assert _lower_mirrored(square, 2) is square


def test_ease_recommends_what_co_occurs_with_the_history_and_never_the_history():
    from fashionrec.evaluation.systems import ease_system

    # P0 goes with P1 (three customers), P2 with P3; repeats and weights do not change EASE's binary matrix
    train = _events([("a", "P0"), ("a", "P1"), ("b", "P0"), ("b", "P1"), ("c", "P0"), ("c", "P1"), ("c", "P1"),
                     ("d", "P2"), ("d", "P3"), ("e", "P2"), ("e", "P3")], weights=[5] + [1] * 10)
    system = ease_system(train, PRODUCTS[:4], EvaluateConfig(ease_l2=1.0))
    assert system.rank([np.array([0])], [np.ones(1)], 1).tolist() == [[1]]
    assert system.rank([np.array([3])], [np.ones(1)], 3)[0].tolist()[0] == 2
    assert 3 not in system.rank([np.array([3])], [np.ones(1)], 3)[0]
    scores = system.score([np.array([0])], [np.ones(1)], [np.array([1, 2])])[0]
    assert scores[0] > 0 and scores[1] == 0.0  # nothing links P0 with P2


def test_ease_scores_each_customer_by_their_binary_history_times_the_item_weights():
    from fashionrec.evaluation.systems import ease_system, ease_weights, interaction_matrix

    train = _events([("a", "P0"), ("a", "P1"), ("b", "P0"), ("b", "P2"), ("c", "P1"), ("c", "P2"), ("c", "P3")])
    system = ease_system(train, PRODUCTS[:4], EvaluateConfig(ease_l2=0.5))
    matrix = interaction_matrix(train, PRODUCTS[:4], lambda w: np.ones(len(w), np.float32))
    weights = ease_weights(matrix, 0.5)
    histories, rows = [np.array([0]), np.array([1, 3]), np.array([2, 2])], [np.array([1, 2]), np.array([0]),
                                                                         np.array([3, 0, 1])]
    profiles = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]], np.float32)  # x_u: repeats count once
    scores = system.score(histories, [np.ones(len(h)) for h in histories], rows)
    for profile, wanted, got in zip(profiles, rows, scores, strict=True):
        np.testing.assert_allclose(got, (profile @ weights)[wanted], rtol=1e-6, atol=1e-7)


def test_ease_on_a_large_catalogue_is_fitted_on_its_most_popular_products_only():
    from fashionrec.evaluation.systems import ease_system, most_popular_rows

    # events per product: P0 3, P1 4, P2 2, P3 1, P4 2 -> the three most popular are P1, P0, then P2 (P2 and P4
    # tie at 2: the lower row wins); P3 and P4 are left out
    train = _events([("a", "P0"), ("b", "P0"), ("c", "P0"), ("a", "P1"), ("b", "P1"), ("c", "P1"), ("d", "P1"),
                     ("d", "P2"), ("e", "P2"), ("e", "P3"), ("a", "P4"), ("f", "P4")])
    assert most_popular_rows(train, PRODUCTS[:5], 3).tolist() == [0, 1, 2]
    assert most_popular_rows(train, PRODUCTS[:5], 9).tolist() == [0, 1, 2, 3, 4]
    capped = ease_system(train, PRODUCTS[:5], EvaluateConfig(ease_l2=1.0, ease_max_products=3))
    alone = ease_system(train[train["product_id"].isin(PRODUCTS[:3])], PRODUCTS[:3], EvaluateConfig(ease_l2=1.0))
    history = [np.array([0, 4]), np.array([3])]  # P4 and P3 are unknown to the capped model: they count for nothing
    ranked = capped.rank(history, [np.ones(2), np.ones(1)], 2)
    assert ranked.tolist() == [alone.rank([np.array([0])], [np.ones(1)], 2)[0].tolist(),
                               alone.rank([np.array([], np.int64)], [np.ones(0)], 2)[0].tolist()]
    scores = capped.score([np.array([0])], [np.ones(1)], [np.array([1, 3])])[0]
    assert scores[0] == alone.score([np.array([0])], [np.ones(1)], [np.array([1])])[0][0]
    assert scores[1] == -np.inf  # never recommended


def test_recent_popularity_ranks_by_time_decayed_events_skipping_the_history():
    from fashionrec.evaluation.systems import recent_popularity_system

    day = pd.Timedelta(days=1)
    start = pd.Timestamp("2026-01-10", tz="UTC")
    # P0: three events ten days before the last event (3 / 2**10); P1: one event at the end (1); P2: one, a day before
    train = _events([("a", "P0"), ("b", "P0"), ("c", "P0"), ("a", "P1"), ("b", "P2")]).assign(
        timestamp=[start - 10 * day] * 3 + [start, start - day])
    system = recent_popularity_system(train, PRODUCTS[:3], half_life_days=1.0)
    assert system.rank([np.array([], np.int64)], [np.ones(0)], 3).tolist() == [[1, 2, 0]]
    assert system.rank([np.array([1])], [np.ones(1)], 2).tolist() == [[2, 0]]
    assert recent_popularity_system(train, PRODUCTS[:3], half_life_days=1e6).rank(
        [np.array([], np.int64)], [np.ones(0)], 1).tolist() == [[0]]  # no decay: plain counts


def test_ials_confidence_ignores_event_weights_when_told_to():
    from fashionrec.evaluation.systems import interaction_matrix

    train = _events([("a", "P0"), ("a", "P0"), ("b", "P1")], weights=[5.0, 1.0, 3.0])
    weighted = interaction_matrix(train, PRODUCTS[:2], lambda w: 2.0 * w).toarray()
    counted = interaction_matrix(train, PRODUCTS[:2], lambda w: 2.0 * np.ones_like(w)).toarray()
    np.testing.assert_allclose(weighted, [[12.0, 0.0], [0.0, 6.0]])
    np.testing.assert_allclose(counted, [[4.0, 0.0], [0.0, 2.0]])
    config = EvaluateConfig(ials_factors=2, ials_iterations=3, ials_event_weights=False)
    assert ials_system(train, PRODUCTS[:2], config).rank([np.array([0])], [np.ones(1)], 1).tolist() == [[1]]


def test_baseline_tuning_keeps_each_baselines_best_setting_on_the_validation_customers():
    from fashionrec.evaluation.tuning import BaselineGrid, tune_baselines
    from fashionrec.model.features import EvalExamples

    day = pd.Timedelta(days=1)
    end = pd.Timestamp("2026-01-30", tz="UTC")
    # P0 was the best seller long ago, P1 sells now: only a short half-life ranks P1 first
    train = _events([(f"c{i}", "P0") for i in range(6)] + [(f"d{i}", "P1") for i in range(3)]).assign(
        timestamp=[end - 20 * day] * 6 + [end] * 3)
    examples = EvalExamples(np.array(["x"]), [np.array([9])], [np.ones(1, np.float32)], [np.zeros(1, np.float32)],
                            [np.array([1])])
    grid = BaselineGrid(ials_factors=(2,), ials_regularization=(0.1,), ials_alpha=(1.0,), ials_event_weights=(True,),
                        recent_popularity_half_life_days=(100.0, 1.0, 2.0), ease_l2=(1.0, 10.0))
    tuned = tune_baselines(train, PRODUCTS, examples, EvaluateConfig(ials_iterations=2), grid)
    assert tuned.chosen["recent_popularity"] == {"recent_popularity_half_life_days": 1.0}  # 1 and 2 tie: the first
    assert tuned.config.recent_popularity_half_life_days == 1.0
    # P1 second (NDCG 1 / log2(3)), then first
    np.testing.assert_allclose([r["ndcg@10"] for _, r in tuned.tried["recent_popularity"]], [1 / np.log2(3), 1, 1])
    assert set(tuned.chosen) == {"recent_popularity", "ease", "ials"} and len(tuned.tried["ease"]) == 2
    assert tuned.config.ials_factors == 2 and tuned.config.ease_l2 in (1.0, 10.0)
