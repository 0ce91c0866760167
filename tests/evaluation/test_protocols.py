import numpy as np
import pandas as pd
import pytest

from fashionrec import artifacts
from fashionrec.stages import ingest
from fashionrec.config import ExportConfig
from fashionrec.evaluation import protocols
from fashionrec.model.popularity import prior_from_events

EVENTS = pd.DataFrame({
    "customer_id": ["a", "a", "b", "a", "c", "b"],
    "product_id": ["p1", "p2", "p1", "p3", "p2", "p4"],
    "event_type": ["click"] * 6,
    "weight": np.ones(6, np.float32),
    "timestamp": pd.to_datetime([1, 2, 3, 4, 5, 5], unit="D", utc=True),
})


def test_leave_last_out_holds_out_each_customers_latest_event():
    train, holdout = protocols.leave_last_out(EVENTS)
    assert sorted(zip(holdout["customer_id"], holdout["product_id"])) == [("a", "p3"), ("b", "p4")]
    assert sorted(zip(train["customer_id"], train["product_id"])) == [("a", "p1"), ("a", "p2"), ("b", "p1"),
                                                                      ("c", "p2")]  # c has one event: kept


def test_cold_products_are_a_seeded_fraction_of_the_products_with_events():
    first = protocols.choose_cold_products(EVENTS, 0.5, seed=1)
    assert len(first) == 2 and set(first) <= {"p1", "p2", "p3", "p4"}
    np.testing.assert_array_equal(first, protocols.choose_cold_products(EVENTS, 0.5, seed=1))


def test_resplit_writes_the_ingest_layout_and_marks_untrained_products_new(tmp_path):
    source = tmp_path / "source"
    catalogue = pd.DataFrame({"product_id": ["p1", "p2", "p3", "p4"], "is_new": False})
    quarantine = pd.DataFrame({"reason": pd.Series([], dtype=str)})
    summary = ingest.IngestSummary(pd.Timestamp("1970-01-03", tz="UTC"), 4, 6, 4, 3, 3, 0, {})
    ingest.write_ingested(str(source), catalogue, EVENTS[:3], EVENTS[3:], quarantine, summary)
    train, holdout = protocols.leave_last_out(protocols.all_events(str(source)))
    protocols.resplit(str(source), str(tmp_path / "out"), train, holdout)
    written = pd.read_parquet(tmp_path / "out" / artifacts.CATALOGUE_FILE).set_index("product_id")["is_new"]
    assert written.to_dict() == {"p1": False, "p2": False, "p3": True, "p4": True}
    assert len(pd.read_parquet(tmp_path / "out" / artifacts.HOLDOUT_EVENTS_FILE)) == 2


def test_sampled_negatives_avoid_what_the_customer_saw():
    negatives = protocols.sample_negatives([np.array([0, 1]), np.array([2])], num_products=5, count=3, seed=0)
    assert negatives.shape == (2, 3)
    assert set(negatives[0]) == {2, 3, 4}
    assert 2 not in negatives[1] and len(set(negatives[1])) == 3


def test_sampled_hit_metrics_by_hand():
    target = np.array([0.9, 0.5, 0.1])
    negatives = np.array([[0.1, 0.2, 0.3], [0.6, 0.4, 0.5], [0.2, 0.3, 0.4]])  # ranks 0, 2 (tie loses), 3
    result = protocols.sampled_hit_metrics(target, negatives, k=3)
    assert result["hr@3"] == pytest.approx(2 / 3)
    assert result["ndcg@3"] == pytest.approx((1.0 + 1.0 / np.log2(4)) / 3)


def test_restricted_recall_ranks_only_the_candidates_and_skips_the_history():
    table = np.eye(4, dtype=np.float32)
    customers = np.array([[0.0, 3.0, 2.0, 1.0], [1.0, 0.0, 0.0, 0.0]], np.float32)
    # candidates are rows 1..3; customer 0 already saw row 1, so its top-1 is row 2
    recall = protocols.restricted_recall(customers, table, np.array([1, 2, 3]), [np.array([1]), np.array([])],
                                         [np.array([2, 3, 0]), np.array([0])], k=1)
    assert recall[0] == pytest.approx(0.5)  # targets among candidates: 2 and 3; found 2
    assert np.isnan(recall[1])  # its only target is not a candidate


def test_daily_priors_are_what_a_midnight_refresh_would_serve_at_each_time():
    events = pd.DataFrame({
        "product_id": ["p1", "p2", "p1", "gone"],  # "gone" is not in the catalogue: ignored
        "weight": [4.0, 2.0, 1.0, 9.0],
        "timestamp": pd.to_datetime(["2026-01-01 12:00", "2026-01-02 00:00", "2026-01-02 06:00",
                                     "2026-01-01 01:00"], utc=True),
    })
    times = pd.Series(pd.to_datetime(["2026-01-01 23:00", "2026-01-02 18:00", "2026-01-03 00:00"], utc=True))
    config = ExportConfig(popularity_prior_weight=1.0, popularity_half_life_days=0.5)
    priors = protocols.daily_priors(events, np.array(["p1", "p2", "p3"]), config, times)
    # Jan 1 23:00: the Jan 1 refresh saw nothing. Jan 2: p1's event is half a day (one half-life) old:
    # 4 / 2 = 2; p2's event at midnight is not before it. Jan 3: p1's events are 1.5 and 0.75 days old
    # (3 and 1.5 half-lives), p2's is 1 day old (2 half-lives).
    p1_jan3, p2_jan3 = 4 * 2 ** -3 + 2 ** -1.5, 2 * 2 ** -2
    mean_jan3 = (p1_jan3 + p2_jan3) / 3
    np.testing.assert_allclose(priors[0], [0.0, 0.0, 0.0])
    np.testing.assert_allclose(priors[1], np.log1p(np.array([2.0, 0.0, 0.0]) / (2.0 / 3)), rtol=1e-6)
    np.testing.assert_allclose(priors[2], np.log1p(np.array([p1_jan3, p2_jan3, 0.0]) / mean_jan3), rtol=1e-6)
    for row, time in zip(priors, times, strict=True):  # the same as the export's own prior, at each midnight
        midnight = time.floor("D")
        before = events[events["timestamp"] < midnight]
        np.testing.assert_allclose(row, prior_from_events(before, np.array(["p1", "p2", "p3"]), config, midnight),
                                   rtol=1e-6, atol=1e-7)


def test_the_validation_split_cuts_the_period_before_the_test_split_by_the_same_rule(tmp_path):
    from fashionrec.config import IngestConfig

    catalogue = pd.DataFrame({"product_id": ["p1", "p2", "p3", "p4"], "title": "t", "category": "c", "price": 1.0,
                              "is_new": False})
    train, holdout = EVENTS.iloc[:5], EVENTS.iloc[5:]  # the test split: the last event
    summary = ingest.IngestSummary(split_time=EVENTS["timestamp"].iloc[5], catalogue_rows=4, event_rows=6,
                                   accepted_products=4, train_events=5, holdout_events=1, new_products=0,
                                   quarantined={})
    ingest.write_ingested(str(tmp_path / "test"), catalogue, train, holdout, train.iloc[:0], summary)
    # a configured split time is the test split's: the validation cut is the quantile all the same
    config = IngestConfig(holdout_fraction=0.4, split_time="2000-01-01")
    protocols.validation_split(str(tmp_path / "test"), str(tmp_path / "validation"), config)
    kept = pd.read_parquet(tmp_path / "validation" / artifacts.TRAIN_EVENTS_FILE)
    validation = pd.read_parquet(tmp_path / "validation" / artifacts.HOLDOUT_EVENTS_FILE)
    # the 0.6 quantile of days 1, 2, 3, 4, 5 is day 3.4: days 1-3 train, days 4-5 validation; day 5's b/p4 is test
    assert sorted(kept["timestamp"].dt.day) == [2, 3, 4]  # (unit="D" from the epoch: day 1 is Jan 2)
    assert sorted(zip(validation["customer_id"], validation["product_id"])) == [("a", "p3"), ("c", "p2")]
    assert "p4" not in set(kept["product_id"]) | set(validation["product_id"])
