import numpy as np
import pandas as pd
import pytest

from fashionrec.config import ExportConfig
from fashionrec.model.popularity import popularity_prior, prior_from_events, recent_popularity

NOW = pd.Timestamp("2026-05-10 12:00", tz="UTC")


def events(*rows: tuple[str, float, float]) -> pd.DataFrame:
    """(product, weight, age in days at NOW) rows."""
    return pd.DataFrame({"product_id": [r[0] for r in rows], "weight": [r[1] for r in rows],
                         "timestamp": [NOW - pd.Timedelta(days=r[2]) for r in rows]})


def test_recent_popularity_halves_an_events_weight_every_half_life() -> None:
    log = events(("a", 1.0, 0.0), ("a", 2.0, 1.0), ("b", 4.0, 2.0))
    # a: 1 + 2 * 1/2 = 2; b: 4 * 1/4 = 1; c: no events
    np.testing.assert_allclose(recent_popularity(log, np.array(["a", "b", "c"]), 1.0), [2.0, 1.0, 0.0])


def test_recent_popularity_ages_at_the_latest_event_by_default_and_never_counts_the_future_more() -> None:
    log = events(("a", 1.0, 3.0), ("b", 1.0, 1.0))
    np.testing.assert_allclose(recent_popularity(log, np.array(["a", "b"]), 2.0), [0.5, 1.0])  # now = b's event
    later = recent_popularity(log, np.array(["a", "b"]), 2.0, now=NOW - pd.Timedelta(days=2))
    np.testing.assert_allclose(later, [2 ** -0.5, 1.0])  # b lies after `now`: age 0, weight 1


def test_prior_is_weighted_log1p_of_popularity_over_its_mean() -> None:
    prior = popularity_prior(np.array([2.0, 1.0, 0.0]), 0.5)  # mean 1
    np.testing.assert_allclose(prior, [0.5 * np.log(3), 0.5 * np.log(2), 0.0], rtol=1e-6)
    assert prior.dtype == np.float32


@pytest.mark.parametrize("popularity, weight", [(np.zeros(3), 0.5), (np.array([1.0, 2.0]), 0.0), (np.zeros(0), 1.0)])
def test_no_popularity_or_zero_weight_gives_no_prior(popularity: np.ndarray, weight: float) -> None:
    np.testing.assert_array_equal(popularity_prior(popularity, weight), np.zeros(len(popularity)))


def test_prior_from_events_uses_the_configured_half_life_and_weight() -> None:
    log = events(("a", 1.0, 0.0), ("a", 2.0, 1.0), ("b", 4.0, 2.0))
    prior = prior_from_events(log, np.array(["a", "b", "c"]), ExportConfig(popularity_prior_weight=2.0,
                                                                            popularity_half_life_days=1.0))
    np.testing.assert_allclose(prior, [2 * np.log(3), 2 * np.log(2), 0.0], rtol=1e-6)


def test_half_life_must_be_positive() -> None:
    with pytest.raises(ValueError, match="half_life_days"):
        recent_popularity(events(("a", 1.0, 0.0)), np.array(["a"]), 0.0)


def test_a_debiased_prior_counts_each_event_by_its_inverse_examination_capped() -> None:
    log = events(("a", 1.0, 0.0), ("a", 1.0, 0.0), ("b", 1.0, 0.0), ("c", 2.0, 0.0)).assign(
        examination=[0.5, np.nan, 0.05, 1.0])  # a: 1/0.5 + 1 (unknown: as logged); b: 1/0.05 = 20, capped at 10
    export = ExportConfig(popularity_prior_weight=1.0, popularity_half_life_days=1.0)
    debiased = prior_from_events(log, np.array(["a", "b", "c"]), export, max_inverse_examination=10.0)
    np.testing.assert_allclose(debiased, np.log1p(np.array([3.0, 10.0, 2.0]) / 5.0), rtol=1e-6)  # mean 15 / 3
    as_logged = prior_from_events(log, np.array(["a", "b", "c"]), export)
    np.testing.assert_allclose(as_logged, np.log1p(np.array([2.0, 1.0, 2.0]) / (5.0 / 3.0)), rtol=1e-6)


def test_events_without_an_examination_column_count_as_logged_when_debiased() -> None:
    log = events(("a", 1.0, 0.0), ("b", 3.0, 0.0))
    export = ExportConfig(popularity_prior_weight=1.0)
    np.testing.assert_array_equal(prior_from_events(log, np.array(["a", "b"]), export, max_inverse_examination=10.0),
                                  prior_from_events(log, np.array(["a", "b"]), export))
