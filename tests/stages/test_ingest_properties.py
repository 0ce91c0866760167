"""Property-based tests: whatever malformed rows are mixed in, ingest reconciles and keeps every good row."""

import csv
import string
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fashionrec import artifacts
from fashionrec.stages import ingest
from fashionrec.config import EVENT_TYPES, IngestConfig

PRODUCTS = [f"P{i}" for i in range(8)]
CONFIG = IngestConfig(split_time="2026-03-01T00:00:00", max_bad_fraction=1.0)

good_event = st.tuples(
    st.sampled_from([f"C{i}" for i in range(6)]),
    st.sampled_from(PRODUCTS),
    st.sampled_from(EVENT_TYPES),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 6, 1)).map(
        lambda t: t.replace(microsecond=0, tzinfo=timezone.utc).isoformat()
    ),
)
junk = st.text(alphabet=string.printable, max_size=12)
bad_event = st.one_of(
    st.tuples(st.just("unknown_event_type"), junk.filter(lambda t: t.strip() != "" and t.strip() not in EVENT_TYPES)),
    st.tuples(st.just("bad_timestamp"), st.sampled_from(["yesterday", "1900-01-01", "2026-13-45", "nan", "9e99"])),
    st.tuples(st.just("unknown_product"), st.sampled_from(["X1", "P99", "p0"])),
    st.tuples(st.just("missing_field"), st.sampled_from(["customer_id", "product_id", "event_type", "timestamp"])),
    st.tuples(st.just("bad_weight"), st.sampled_from(["-1", "0", "abc", "inf", "1e39"])),
)
bad_product = st.one_of(
    st.tuples(st.just("bad_price"), st.sampled_from(["-3", "free", "nan", "-inf"])),
    st.tuples(st.just("missing_field"), st.sampled_from(["title", "category", "price"])),
)


def _bad_event_row(index: int, kind: str, value: str) -> dict:
    row = {"customer_id": "C0", "product_id": "P0", "event_type": "click",
           "timestamp": f"2026-02-{1 + index % 28:02d}T00:00:{index % 60:02d}+00:00", "weight": ""}
    row["customer_id"] = f"B{index}"  # never equal to a good row, so never a duplicate of one
    if kind == "unknown_event_type":
        row["event_type"] = value
    elif kind == "bad_timestamp":
        row["timestamp"] = value
    elif kind == "unknown_product":
        row["product_id"] = value
    elif kind == "missing_field":
        row[value] = ""
    else:
        row["weight"] = value
    return row


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    good=st.lists(good_event, min_size=1, max_size=30, unique=True),
    bad=st.lists(bad_event, max_size=15),
    bad_products=st.lists(bad_product, max_size=4),
    duplicates=st.integers(min_value=0, max_value=3),
    shuffle_seed=st.integers(min_value=0, max_value=2**16),
)
def test_ingest_reconciles_and_keeps_every_good_row(tmp_path, good, bad, bad_products, duplicates, shuffle_seed):
    catalogue = [{"product_id": p, "title": f"{p} dress", "category": "dress", "price": "9.5"} for p in PRODUCTS]
    for i, (kind, value) in enumerate(bad_products):
        row = {"product_id": f"X{i}", "title": "x", "category": "x", "price": "1"}
        row["price" if kind == "bad_price" else value] = value if kind == "bad_price" else ""
        catalogue.append(row)
    good_rows = [dict(zip(["customer_id", "product_id", "event_type", "timestamp"], g, strict=True), weight="")
                 for g in good]
    bad_rows = [_bad_event_row(i, kind, value) for i, (kind, value) in enumerate(bad)]
    duplicate_rows = [dict(good_rows[i % len(good_rows)]) for i in range(duplicates)]
    events = pd.DataFrame(good_rows + bad_rows + duplicate_rows).sample(frac=1.0, random_state=shuffle_seed)
    folder = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per generated example
    # Quote every field: an unquoted carriage return inside a field would be a line break to any reader.
    pd.DataFrame(catalogue).to_csv(folder / "catalogue.csv", index=False, quoting=csv.QUOTE_ALL)
    events.to_csv(folder / "events.csv", index=False, quoting=csv.QUOTE_ALL)

    summary = ingest.ingest(str(folder / "catalogue.csv"), str(folder / "events.csv"), str(folder / "out"), CONFIG)

    quarantine = pd.read_parquet(folder / "out" / artifacts.QUARANTINE_FILE)
    per_file = quarantine["source"].str.endswith("events.csv")
    assert summary.accepted_products + (~per_file).sum() == summary.catalogue_rows == len(catalogue)
    assert summary.train_events + summary.holdout_events + per_file.sum() == summary.event_rows == len(events)
    assert (~per_file).sum() == len(bad_products)
    assert per_file.sum() == len(bad) + duplicates
    assert sorted(quarantine.loc[per_file, "reason"]) == sorted([k for k, _ in bad] + ["duplicate_event"] * duplicates)
    accepted = pd.concat([pd.read_parquet(folder / "out" / f) for f in (artifacts.TRAIN_EVENTS_FILE,
                                                                         artifacts.HOLDOUT_EVENTS_FILE)])
    kept = {(r.customer_id, r.product_id, r.event_type, r.timestamp.isoformat()) for r in accepted.itertuples()}
    assert kept == set(good)


LATEST = "2027-01-01"
any_text = st.text(alphabet=string.printable + "\ufffd", max_size=8)
instants = st.datetimes(min_value=datetime(1985, 1, 1), max_value=datetime(2031, 1, 1))
iso_texts = st.tuples(instants, st.sampled_from([0, 3, 6, 7]), st.sampled_from(["", "Z", "+05:30", "-10:00"])).map(
    lambda t: t[0].isoformat(timespec="microseconds")[:20 + t[1]].rstrip(".") + t[2])
plain_values = {  # each field's plain values, mostly valid
    "customer_id": st.sampled_from(["C1", " C1", "C2"]),
    "product_id": st.sampled_from(["P1", "P2", "P3"]),
    "event_type": st.sampled_from(EVENT_TYPES),
    "timestamp": st.one_of(iso_texts, st.integers(-10**12, 10**12), st.integers(0, 2 * 10**9).map(float)),
    "weight": st.one_of(st.none(), st.floats(-1, 9), st.integers(-1, 9)),
    "device": st.one_of(st.none(), st.sampled_from(["mobile", "desktop", "fridge"])),
    "region": st.one_of(st.none(), st.sampled_from(["north", "Île-de-France"])),
    "local_time": st.one_of(st.none(), st.sampled_from(["2026-12-05T19:30:00", "2026-12-06T12:00:00"])),
}
odd_values = {  # anything else a client might post
    "customer_id": st.one_of(st.sampled_from(["", "C\ufffd"]), any_text, st.none(), st.integers(0, 9)),
    "product_id": st.one_of(st.sampled_from(["p1", " ", "P1 "]), any_text, st.none()),
    "event_type": st.one_of(st.sampled_from(["Click", ""]), any_text, st.none()),
    "timestamp": st.one_of(st.floats(allow_nan=True), any_text, st.none(), st.sampled_from(["2026-12-05 18:30:00"]),
                           instants.map(lambda t: str(int(t.replace(tzinfo=timezone.utc).timestamp())))),
    "weight": st.one_of(st.floats(allow_nan=True, allow_infinity=True), any_text, st.booleans()),
    "device": st.sampled_from(["", " mobile"]),
    "region": any_text,
    "local_time": any_text,
}
odd_changes = st.lists(st.sampled_from(list(odd_values)), max_size=2).flatmap(
    lambda names: st.fixed_dictionaries({name: odd_values[name] for name in names}))
records = st.tuples(st.fixed_dictionaries(plain_values), odd_changes).map(lambda t: {**t[0], **t[1]})


@settings(max_examples=300, deadline=None)
@given(record=records)
def test_the_cheap_per_event_check_never_accepts_what_ingest_refuses_nor_changes_a_value(record):
    """Whatever one event holds, plain_event's acceptance is validate_events', with the same values."""
    config = IngestConfig(latest_timestamp=LATEST)
    fast = ingest.plain_event(record, {"P1", "P2"}, config, ingest.plausible_range(config))
    if fast is None:
        return
    frame = pd.DataFrame([record], columns=[*ingest.EVENTS_REQUIRED, "weight", *ingest.EVENT_CONTEXT]).astype(object)
    accepted, quarantine = ingest.validate_events(frame, "e", {"P1", "P2"}, config)
    assert quarantine.empty
    row = accepted.iloc[0]
    assert fast == (row["customer_id"], row["product_id"], row["event_type"], float(row["weight"]),
                    row["timestamp"].timestamp())


local_time_texts = st.tuples(
    instants,
    st.sampled_from(["T", " ", "t"]),
    st.sampled_from(["%H:%M", "%H:%M:%S", "%H:%M:%S.%f"]),
    st.sampled_from([0, 1, 3, 4]),  # digits cut off a microsecond fraction (a 6-digit one, or none)
    st.sampled_from(["", "123", "1234567891"]),  # digits added: nanoseconds, then beyond
    st.sampled_from(["", "Z", "z", "+05:30", "-10:00", "+0930", "+09", "+23:59", "+24:00", "+09:60", " +01:00"]),
).map(lambda t: t[0].strftime(f"%Y-%m-%d{t[1]}{t[2]}")[:len(t[0].strftime(f"%Y-%m-%d{t[1]}{t[2]}")) - t[3]]
      + (t[4] if t[2].endswith("%f") else "") + t[5])
odd_local_times = st.sampled_from(["2026-02-30T10:00", "2026-12-05T24:00:00", "2026-12-05T22", "2026-12-05",
                                   " 2026-12-05T19:30:00+01:00 ", "", "  "])


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.one_of(local_time_texts, odd_local_times, any_text, st.none()), max_size=12))
@example(values=["2000-01-01T00:00", "2000-01-01T00:00:00.000000123z", "01"])  # year 1, beside nanoseconds
@example(values=["2000-01-01T00:00", "01"])  # year 1 beside an ISO form read at numpy speed
@example(values=["0001-01-01T00:00", "9999-12-31 23:59", "2000-01-01T00:00"])  # ISO forms out of range
def test_local_times_are_each_values_wall_clock_read_one_by_one(values):
    """The vectorised reading of a local_time column equals local_wall_clock of each (stripped) value, NaT where
    that gives None: ISO forms with every kind of offset, valid or not, and any other text."""
    one_by_one = [ingest.local_wall_clock(v.strip() if isinstance(v, str) and v.strip() else None) for v in values]
    read = ingest._local_times(pd.Series(values, dtype=object))
    assert [None if pd.isna(t) else t for t in read] == one_by_one
