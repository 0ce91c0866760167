import numpy as np
import pandas as pd

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation.systems import embedding_system, ials_system, popularity_system, published_system
from fashionrec.publish import ServedCatalogue

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
    published = ServedCatalogue(1, list(PRODUCTS[order]), table[order])
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


def test_published_model_ranks_with_its_own_popularity_prior():
    table = np.random.default_rng(2).normal(size=(10, 4)).astype(np.float32)
    prior = np.linspace(0.0, 3.0, 10).astype(np.float32)  # strong enough to reorder
    published = ServedCatalogue(1, list(PRODUCTS), table, prior)
    history, weights = [np.array([0, 1])], [np.ones(2)]
    expected = embedding_system(table, prior).rank(history, weights, 5)
    assert published_system(published, PRODUCTS).rank(history, weights, 5).tolist() == expected.tolist()
    assert expected.tolist() != embedding_system(table).rank(history, weights, 5).tolist()
