import numpy as np
import pandas as pd
import pytest

from fashionrec import artifacts
from fashionrec.stages import ingest
from fashionrec.config import IngestConfig

LENIENT = IngestConfig(split_time="2026-01-02", max_bad_fraction=1.0)  # the fixtures are mostly bad rows
CATALOGUE = pd.DataFrame(
    {
        "product_id": ["P1", "P2", "P3", "P3", "P4"],
        "title": ["red dress", "blue jeans", "green coat", "dupe", None],
        "category": ["dress", "jeans", "coat", "coat", "bag"],
        "price": ["10", "-5", "30", "31", "12"],
    }
)
EVENTS = pd.DataFrame(
    {
        "customer_id": ["C1", "C1", "C2", "C2", "C3", "C3", "C1"],
        "product_id": ["P1", "P3", "P1", "P9", "P3", "P1", "P1"],
        "event_type": ["click", "purchase", "wishlist", "click", "add_to_bag", "click", "click"],
        "timestamp": ["2026-01-01T10:00:00Z", "2026-01-02T10:00:00Z", "2026-01-03T00:00:00Z",
                      "2026-01-03T00:00:00Z", "yesterday", "1767571200", "2026-01-01T10:00:00Z"],
    }
)


def _write(tmp_path, catalogue=CATALOGUE, events=EVENTS):
    catalogue.to_csv(tmp_path / "catalogue.csv", index=False)
    events.to_csv(tmp_path / "events.csv", index=False)
    return str(tmp_path / "catalogue.csv"), str(tmp_path / "events.csv")


def test_bad_rows_are_quarantined_with_reasons_and_everything_reconciles(tmp_path):
    catalogue_uri, events_uri = _write(tmp_path)
    summary = ingest.ingest(catalogue_uri, events_uri, str(tmp_path / "out"), LENIENT)
    quarantine = pd.read_parquet(tmp_path / "out" / artifacts.QUARANTINE_FILE)
    reasons = dict(zip(zip(quarantine["source"].str[-7:], quarantine["row_number"]), quarantine["reason"]))
    assert reasons == {
        ("gue.csv", 2): "bad_price",
        ("gue.csv", 4): "duplicate_product",
        ("gue.csv", 5): "missing_field",
        ("nts.csv", 3): "unknown_event_type",
        ("nts.csv", 4): "unknown_product",
        ("nts.csv", 5): "bad_timestamp",
        ("nts.csv", 7): "duplicate_event",
    }
    assert summary.accepted_products + 3 == summary.catalogue_rows
    assert summary.train_events + summary.holdout_events + 4 == summary.event_rows


def test_split_puts_events_before_the_cut_off_in_train_and_flags_new_products(tmp_path):
    catalogue_uri, events_uri = _write(tmp_path)
    ingest.ingest(catalogue_uri, events_uri, str(tmp_path / "out"), LENIENT)
    train = pd.read_parquet(tmp_path / "out" / artifacts.TRAIN_EVENTS_FILE)
    holdout = pd.read_parquet(tmp_path / "out" / artifacts.HOLDOUT_EVENTS_FILE)
    catalogue = pd.read_parquet(tmp_path / "out" / artifacts.CATALOGUE_FILE)
    assert train["product_id"].tolist() == ["P1"]
    assert sorted(holdout["product_id"]) == ["P1", "P3"]  # the epoch-seconds timestamp parsed to 2026-01-05
    assert catalogue.set_index("product_id")["is_new"].to_dict() == {"P1": False, "P3": True}
    assert holdout.set_index("event_type")["weight"]["purchase"] == IngestConfig().event_weights.purchase


def test_default_split_leaves_the_configured_fraction_for_holdout():
    times = pd.Series(pd.date_range("2026-01-01", periods=100, freq="h", tz="UTC"))
    split = ingest.choose_split_time(times, IngestConfig(holdout_fraction=0.1))
    assert (times >= split).sum() == 10


def test_missing_required_column_is_a_clear_error(tmp_path):
    catalogue_uri, events_uri = _write(tmp_path, events=EVENTS.drop(columns="timestamp"))
    with pytest.raises(ingest.IngestError, match="missing required columns \\['timestamp'\\]"):
        ingest.ingest(catalogue_uri, events_uri, str(tmp_path / "out"), IngestConfig())


def test_too_many_bad_rows_fail_the_run_but_the_quarantine_is_written(tmp_path):
    catalogue_uri, events_uri = _write(tmp_path)
    with pytest.raises(ingest.IngestError, match=r"catalogue.csv: 3 of 5 rows \(60.0%\) are unusable.*bad_price"):
        ingest.ingest(catalogue_uri, events_uri, str(tmp_path / "out"), IngestConfig(max_bad_fraction=0.5))
    assert len(pd.read_parquet(tmp_path / "out" / artifacts.QUARANTINE_FILE)) == 7


def test_undecodable_text_is_quarantined_as_bad_encoding(tmp_path):
    catalogue_uri, events_uri = _write(tmp_path, catalogue=CATALOGUE.iloc[:1])
    with open(catalogue_uri, "ab") as stream:
        stream.write(b"P5,caf\xe9 dress,dress,20\n")  # Latin-1 bytes, not UTF-8
    good, bad = ingest.validate_catalogue(pd.read_csv(catalogue_uri, dtype=str, encoding_errors="replace"), "c")
    assert good["product_id"].tolist() == ["P1"]
    assert bad[["row_number", "reason"]].values.tolist() == [[2, "bad_encoding"]]


def test_blank_required_fields_count_as_missing():
    frame = pd.DataFrame({"product_id": ["P1", "  "], "title": ["t", "t"], "category": ["c", "c"], "price": ["1", "2"]})
    good, bad = ingest.validate_catalogue(frame, "c")
    assert good["product_id"].tolist() == ["P1"]
    assert bad["reason"].tolist() == ["missing_field"]


def test_parquet_input_with_a_stored_pandas_index_is_read_row_for_row(tmp_path):
    """A filtered frame saved with its index (rows 1, 3, 5, ...) must validate like any other file."""
    catalogue_uri, _ = _write(tmp_path)
    filtered = EVENTS.iloc[::2]  # index 0, 2, 4, 6: not 0..n-1
    filtered.to_parquet(tmp_path / "events.parquet")  # pandas stores the index in the file
    summary = ingest.ingest(catalogue_uri, str(tmp_path / "events.parquet"), str(tmp_path / "out"), LENIENT)
    quarantine = pd.read_parquet(tmp_path / "out" / artifacts.QUARANTINE_FILE)
    events = quarantine[quarantine["source"].str.endswith("events.parquet")]
    assert dict(zip(events["row_number"], events["reason"])) == {
        2: "unknown_event_type", 3: "bad_timestamp", 4: "duplicate_event"}
    assert summary.train_events + summary.holdout_events == 1


def test_event_context_is_kept_and_wrong_context_quarantined():
    """device, channel, region and local_time are optional: blank is unknown, a wrong value is quarantined."""
    rows = [  # (device, channel, region, local_time) of an event at 18:30 UTC
        ("mobile", "online", "GB", "2026-12-05T19:30:00+01:00"),  # an offset: read at it, 19:30 wall clock
        ("", "", "", ""),  # all unknown
        ("tablet", "store", "SE", "2026-12-05T08:30:00"),  # UTC-10 wall clock
        ("fridge", "online", "GB", ""),
        ("mobile", "catalogue", "GB", ""),
        ("mobile", "online", "x" * 65, ""),
        ("mobile", "online", "GB", "2026-12-05T18:37:30"),  # 7.5 minutes off UTC: no time zone
        ("desktop", "app", "GB", "2026-12-05T18:32:00"),  # 2 minutes off UTC: a clock, or an arrival stamp
        ("mobile", "online", "GB", "2026-12-06T12:00:00"),  # UTC+17:30: no time zone
        ("mobile", "online", "GB", "yesterday evening"),
    ]
    raw = pd.DataFrame([{"customer_id": "c", "product_id": "p", "event_type": "click",
                         "timestamp": "2026-12-05T18:30:00Z", "device": d, "channel": ch, "region": r, "local_time": t}
                        for d, ch, r, t in rows])
    events, quarantine = ingest.validate_events(raw, "events.csv", {"p"}, IngestConfig())
    assert quarantine["reason"].tolist() == ["bad_device", "bad_channel", "bad_region"] + ["bad_local_time"] * 3
    assert quarantine["row_number"].tolist() == [4, 5, 6, 7, 9, 10]
    assert events["device"].tolist() == ["mobile", None, "tablet", "desktop"]
    assert events["channel"].tolist() == ["online", None, "store", "app"]
    assert events["region"].tolist() == ["GB", None, "SE", "GB"]
    assert events["local_time"].tolist()[0] == pd.Timestamp("2026-12-05T19:30:00")
    assert pd.isna(events["local_time"].tolist()[1]) and events["local_time"].tolist()[2] == pd.Timestamp(
        "2026-12-05T08:30:00")


def test_examination_is_a_probability_or_blank():
    """Where the product was shown sets how likely it was looked at: (0, 1] is kept, blank is unknown
    (NaN), anything else is quarantined with its own reason."""
    given = ["0.25", "1", "", "0", "1.5", "-0.1", "often", " 0.5 "]
    raw = pd.DataFrame([{"customer_id": "c", "product_id": "p", "event_type": "click",
                         "timestamp": f"2026-12-05T18:3{i}:00Z", "examination": value}
                        for i, value in enumerate(given)])
    events, quarantine = ingest.validate_events(raw, "events.csv", {"p"}, IngestConfig())
    assert quarantine["reason"].tolist() == ["bad_examination"] * 4
    assert quarantine["row_number"].tolist() == [4, 5, 6, 7]
    assert events["examination"].dtype == np.float32
    assert events["examination"].fillna(-1).tolist() == [0.25, 1.0, -1, 0.5]


def test_events_without_context_columns_get_none():
    raw = pd.DataFrame([{"customer_id": "c", "product_id": "p", "event_type": "click", "timestamp": "2026-01-01"}])
    events, _ = ingest.validate_events(raw, "events.csv", {"p"}, IngestConfig())
    assert list(events.columns) == ["customer_id", "product_id", "event_type", "weight", "timestamp"]


CONTEXT_SAMPLES = {
    "device": ["mobile", " tablet ", "", "fridge", None, "caf\ufffd"],
    "channel": ["online", "store", "catalogue", ""],
    "region": ["GB", "x" * 65, "bad\nregion", " SE "],
    "local_time": ["2026-12-05T19:30:00+01:00", "2026-12-05T18:37:30", "2026-12-05T18:32:00", "2026-12-06T12:00:00",
                   "2026-12-05T08:30:00", "yesterday evening", "", "2026-12-06T08:45:00"],
}


def test_the_cheap_per_request_context_check_agrees_with_ingests_rules():
    """context_reasons (one request, no frame) refuses exactly what validate_events quarantines, with the same
    reason, for every value of each column at 18:30 UTC."""
    now = pd.Timestamp("2026-12-05T18:30:00Z")
    for name, values in CONTEXT_SAMPLES.items():
        raw = pd.DataFrame([{"customer_id": "c", "product_id": "p", "event_type": "click", "timestamp": now.isoformat(),
                             name: value} for value in values])
        _, quarantine = ingest.validate_events(raw, "e", {"p"}, IngestConfig())
        expected = dict(zip(quarantine["row_number"] - 1, quarantine["reason"], strict=True))
        for row, value in enumerate(values):
            assert ingest.context_reasons({name: value}, now, IngestConfig()) == (
                {name: expected[row]} if row in expected else {}), (name, value)
    both = ingest.context_reasons({"device": "fridge", "local_time": "yesterday"}, now, IngestConfig())
    assert both == {"device": "bad_device", "local_time": "bad_local_time"}


PLAUSIBLE = ingest.plausible_range(IngestConfig(latest_timestamp="2027-01-01"))
PLAIN_BASE = {"customer_id": "C1", "product_id": "P1", "event_type": "click", "timestamp": "2026-12-05T18:30:00Z"}
# (changes to PLAIN_BASE, whether plain_event itself accepts the event); whatever it declines, validate_events decides
PLAIN_CASES = [
    ({}, True),
    ({"timestamp": "2026-12-05T18:30:00.123456+00:00"}, True),
    ({"timestamp": "2026-12-05T19:30:00.5+01:00"}, True),
    ({"timestamp": "2026-12-05T18:30:00"}, True),  # naive: UTC, as ingest reads it
    ({"timestamp": 1_796_463_237}, True),
    ({"weight": 2}, True),
    ({"weight": 0.3}, True),  # kept as its float32, as ingest keeps it
    ({"event_type": "purchase"}, True),
    ({"device": "mobile", "region": "north", "local_time": "2026-12-05T19:30:00"}, True),
    ({"customer_id": " C1 "}, True),  # kept as given, as ingest keeps it
    ({"timestamp": "1796463237"}, False),  # numeric text: epoch seconds to ingest
    ({"timestamp": 1_796_463_237.0}, True),  # a JSON integer may arrive as a float
    ({"timestamp": 1_796_463_237.5}, False),
    ({"timestamp": "2026-12-05 18:30:00"}, False),
    ({"timestamp": "2026-12-05T18:30:00.1234567Z"}, False),
    ({"timestamp": "2026-02-30T18:30:00Z"}, False),
    ({"timestamp": "1980-01-01T00:00:00Z"}, False),
    ({"timestamp": "2030-01-01T00:00:00Z"}, False),
    ({"timestamp": None}, False),
    ({"weight": "2"}, False),
    ({"weight": 0}, False),
    ({"weight": -1.0}, False),
    ({"weight": float("nan")}, False),
    ({"weight": True}, False),
    ({"event_type": "Click"}, False),
    ({"product_id": "P9"}, False),
    ({"product_id": " "}, False),
    ({"customer_id": None}, False),
    ({"customer_id": 7}, False),
    ({"customer_id": "C\ufffd"}, False),
    ({"device": "fridge"}, False),
    ({"region": ""}, False),
    ({"local_time": "2026-12-06T12:00:00"}, False),  # UTC+17:30: no time zone
]


def test_the_cheap_per_event_check_accepts_plain_events_with_ingests_values_and_leaves_the_rest_to_it():
    """plain_event accepts exactly the plain, valid events, each with the weight and timestamp validate_events
    gives it; what it declines, validate_events judges (some of those it accepts: declining is not refusing)."""
    config = IngestConfig(latest_timestamp="2027-01-01")
    for change, plain in PLAIN_CASES:
        record = {**PLAIN_BASE, **change}
        fast = ingest.plain_event(record, {"P1"}, config, PLAUSIBLE)
        assert (fast is not None) == plain, change
        if fast is None:
            continue
        frame = pd.DataFrame([record], columns=[*ingest.EVENTS_REQUIRED, "weight", *ingest.EVENT_CONTEXT])
        accepted, quarantine = ingest.validate_events(frame.astype(object), "e", {"P1"}, config)
        assert quarantine.empty, change
        row = accepted.iloc[0]
        assert fast == (row["customer_id"], row["product_id"], row["event_type"], float(row["weight"]),
                        row["timestamp"].timestamp()), change
    assert ingest.plain_event({**PLAIN_BASE, "weight": 0.3}, {"P1"}, config, PLAUSIBLE).weight == float(np.float32(0.3))
    assert ingest.plain_event({**PLAIN_BASE, "timestamp": "2026-12-05T19:30:00.5+01:00"}, {"P1"}, config,
                              PLAUSIBLE).timestamp == 1_796_495_400.5


def test_the_plausible_range_is_the_configured_one_or_a_day_from_now():
    configured = IngestConfig(earliest_timestamp="2001-02-03", latest_timestamp="2027-01-01")
    earliest, latest = ingest.plausible_range(configured)
    assert (earliest.isoformat(), latest.isoformat()) == ("2001-02-03T00:00:00+00:00", "2027-01-01T00:00:00+00:00")
    _, tomorrow = ingest.plausible_range(IngestConfig())
    assert abs(tomorrow.timestamp() - (pd.Timestamp.now(tz="UTC").timestamp() + 86_400)) < 60
