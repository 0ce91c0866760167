"""The pooled race (ShopConfig.race_candidates): the generator's events at a cost that grows with the sessions."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from fashionrec.config import ConfigError, PipelineConfig, ShopConfig
from fashionrec.datasets import synthetic
from fashionrec.datasets.synthetic import candidate_law, generate_shop


def test_the_candidate_law_is_half_the_race_bias_and_half_uniform():
    # exp(bias) = 1 and 3 -> 1/4 and 3/4 of the popular half; the uniform half gives 1/4 each
    np.testing.assert_allclose(candidate_law(np.array([0.0, np.log(3.0)])), [0.375, 0.625])
    np.testing.assert_allclose(candidate_law(np.array([5.0, 5.0, 5.0, 5.0])), [0.25] * 4)


def test_the_distinct_prefix_skips_a_product_already_finished():
    products = np.array([[5, 5, 2, 7, 2, 9],
                         [1, 1, 1, 1, 1, 2]])
    positions, found = synthetic._distinct_prefix(products, 3)
    assert found.tolist() == [True, False]
    assert positions[0].tolist() == [0, 2, 3]  # 5, 2, 7: the second 5 and the second 2 are the same products


def test_each_session_picks_the_earliest_distinct_products():
    drawn = np.array([[4, 4, 8, 1, 8, 6, 3]])
    race = np.array([[0.5, 0.1, 0.2, 0.9, 0.05, 0.3, 0.8]])
    # finishing order: 8 (0.05), 4 (0.1), 8 again (0.2), 6 (0.3), 4 again (0.5), 3 (0.8), 1 (0.9)
    chosen = synthetic._first_distinct(drawn, race, 3)
    assert np.take_along_axis(drawn, chosen, axis=1).tolist() == [[8, 4, 6]]


def test_a_short_prefix_falls_back_to_the_whole_row(monkeypatch):
    monkeypatch.setattr(synthetic, "DISTINCT_SEARCH", 1)  # only the 2 earliest searched first: 4 and 4 again
    drawn = np.array([[4, 4, 9, 4]])
    race = np.array([[0.1, 0.2, 0.9, 0.3]])
    chosen = synthetic._first_distinct(drawn, race, 2)
    assert np.take_along_axis(drawn, chosen, axis=1).tolist() == [[4, 9]]
    with pytest.raises(ValueError, match="raise shop.race_candidates"):
        synthetic._first_distinct(np.array([[4, 4, 4]]), np.array([[0.1, 0.2, 0.3]]), 2)


def test_the_first_pick_follows_the_exact_race_law():
    """Sampling-importance-resampling: 20,000 sessions of one taste, 400 candidates from 40 products with a strong
    popularity bias. With the candidates' own chances divided out, a session's first pick has the exact race's
    chances, softmax(sharpness * affinity + bias), within 0.01 (the largest is about 0.1, its standard error
    0.002); the law without the bias is further off than that."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(40, 4)).astype(np.float32)
    taste = np.tile(rng.normal(size=(1, 4)).astype(np.float32), (20_000, 1))
    bias = np.linspace(0.0, 3.0, 40)
    picks, affinity = synthetic._pooled_race(np.random.default_rng(1), 1.5, taste, latent, bias, 1, 400)
    np.testing.assert_allclose(affinity[:, 0], (latent @ taste[0])[picks[:, 0]], rtol=1e-6)
    shares = np.bincount(picks[:, 0], minlength=40) / len(picks)
    assert np.abs(shares - _softmax(1.5 * (latent @ taste[0]) + bias)).max() < 0.01
    assert np.abs(shares - _softmax(1.5 * (latent @ taste[0]))).max() > 0.03


def _softmax(logits: np.ndarray) -> np.ndarray:
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def test_race_candidates_below_the_minimum_are_refused():
    with pytest.raises(ConfigError, match=r"^race_candidates: expected 0 \(race every product\) or at least 64, "
                                          "got 10$"):
        ShopConfig(race_candidates=10)
    assert ShopConfig(race_candidates=64).race_candidates == 64
    with pytest.raises(ConfigError, match=r"^shop\.race_candidates: expected 0 .* got 63$"):
        PipelineConfig().with_settings(["shop.race_candidates=63"])


@pytest.mark.parametrize("context_strength", [0.0, 1.0], ids=["plain", "context"])
def test_a_pooled_shop_is_deterministic_and_keeps_the_shop_shape(context_strength):
    config = ShopConfig(num_customers=400, num_products=600, num_weeks=4, race_candidates=128,
                        context_strength=context_strength)
    events = generate_shop(config).events
    pd.testing.assert_frame_equal(events, generate_shop(config).events, check_exact=True)
    exact = generate_shop(dataclasses.replace(config, race_candidates=0)).events
    assert len(events) == len(exact) and list(events.columns) == list(exact.columns)
    assert not events.equals(exact)  # the catalogue outgrows 128 candidates: the pooled race ran
    shop = generate_shop(config, with_events=False)
    assert abs(_logged_affinity(shop, events) - _logged_affinity(shop, exact)) < 0.05


def _logged_affinity(shop: synthetic.SyntheticShop, events: pd.DataFrame) -> float:
    """The mean true affinity of the logged (customer, product) pairs: how closely the events follow tastes."""
    customers = events["customer_id"].str[1:].astype(int).to_numpy()
    products = events["product_id"].str[1:].astype(int).to_numpy()
    return float(np.einsum("ij,ij->i", shop.customer_tastes[customers], shop.product_latent[products]).mean())


def test_a_catalogue_within_the_candidates_races_exactly():
    small = dict(num_customers=300, num_products=200, num_weeks=3)
    pd.testing.assert_frame_equal(generate_shop(ShopConfig(**small, race_candidates=200)).events,
                                  generate_shop(ShopConfig(**small)).events, check_exact=True)
