"""Ingest: raw catalogue + event log → validated canonical dataset with a time-based split.

Contract: every input row ends up either accepted or in the quarantine table with its source file,
row number and a reason code, so ``input = accepted + quarantined`` always holds and no good row is
lost. Products launched or first interacted with after the split time are flagged ``is_new``
(cold-start products).

Canonical input schema (CSV or Parquet):

* catalogue: ``product_id``, ``title``, ``category``, ``price`` (required); ``description``,
  ``colour``, ``brand``, ``launch_date`` (optional).
* events: ``customer_id``, ``product_id``, ``event_type`` (one of ``click``, ``add_to_bag``,
  ``save_for_later``, ``purchase``), ``timestamp`` (ISO 8601 or epoch seconds) (required);
  ``weight`` (optional, positive; defaults to the event type's weight); the context of the event,
  each optional: ``device`` (one of ``ingest.devices``), ``channel`` (one of ``ingest.channels``),
  ``region`` (a code or name of at most ``ingest.max_region_length`` printable characters) and
  ``local_time`` (the customer's wall-clock time, ISO 8601; it must lie a whole quarter-hour, give or
  take five minutes, within UTC-12..UTC+14 of ``timestamp``). Context columns that are present in the input are kept (blank:
  unknown); absent ones are not added.
* ``examination`` (optional, in (0, 1]; blank: unknown): how likely the customer was to look at the
  product where it was shown when the event happened, from its position and the examination curve
  (``fashionrec shop training-data --debias`` writes it from the shop's log). Training with
  ``train.position_debiasing=ips`` weighs the event as a target by its inverse.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from fashionrec import artifacts
from fashionrec import storage
from fashionrec.config import EVENT_TYPES, IngestConfig

CATALOGUE_REQUIRED = ("product_id", "title", "category", "price")
CATALOGUE_OPTIONAL = {"description": "", "colour": "unknown", "brand": "unknown", "launch_date": None}
EVENTS_REQUIRED = ("customer_id", "product_id", "event_type", "timestamp")
EVENT_CONTEXT = ("device", "channel", "region", "local_time")  # optional columns of events, in output order
LOCAL_TIME = "local_time"
EXAMINATION = artifacts.EXAMINATION_COLUMN  # optional: P(the product was looked at where shown), for debiasing
UTC_OFFSET_RANGE_H = (-12.0, 14.0)  # the time zones in use
OFFSET_STEP_MIN = 15  # every time zone's offset is a whole number of quarter-hours ...
LOCAL_TIME_TOLERANCE_S = 300  # ... give or take this much: the client's clock, or a timestamp stamped on arrival
TOLERANCE_H = LOCAL_TIME_TOLERANCE_S / 3600
MAX_WEIGHT = float(np.finfo(np.float32).max)  # weights are kept as float32: a larger one would become infinite
# A local time as ISO 8601 date and time, then an optional offset (Z, +hh, +hhmm or +hh:mm, a valid one) whose
# removal leaves the wall clock: the group.
ISO_WALL_CLOCK = re.compile(r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)"
                            r"(?:Z|[+-](?:[01]\d|2[0-3])(?::?[0-5]\d)?)?$")
# The timestamp text :func:`plain_event` reads itself (datetime.fromisoformat); any other form goes to pandas.
PLAIN_ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})?")

# Output file names inside the ingest artifact directory.
REPLACEMENT_CHARACTER = "\ufffd"  # what undecodable bytes become when CSV text is read


class IngestError(ValueError):
    """Raised when the input cannot be ingested at all (missing columns, nothing valid)."""


@dataclass(frozen=True)
class IngestSummary:
    split_time: pd.Timestamp
    catalogue_rows: int
    event_rows: int
    accepted_products: int
    train_events: int
    holdout_events: int
    new_products: int
    quarantined: dict[str, int]

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "split_time": self.split_time.isoformat()}


def ingest(catalogue_uri: str, events_uri: str, output_dir: str, config: IngestConfig) -> IngestSummary:
    """Validate, split and write the canonical dataset to ``output_dir``."""
    raw_catalogue = storage.read_table(catalogue_uri)
    raw_events = storage.read_table(events_uri)
    catalogue, bad_products = validate_catalogue(raw_catalogue, catalogue_uri)
    events, bad_events = validate_events(raw_events, events_uri, set(catalogue["product_id"]), config)
    if events.empty:
        raise IngestError(f"no valid events in {events_uri}; see the quarantine for reasons")
    split_time = choose_split_time(events["timestamp"], config)
    train, holdout = split_events(events, split_time)
    catalogue["is_new"] = ~catalogue["product_id"].isin(set(train["product_id"]))
    quarantine = pd.concat([bad_products, bad_events], ignore_index=True)
    summary = IngestSummary(
        split_time=split_time,
        catalogue_rows=len(raw_catalogue),
        event_rows=len(raw_events),
        accepted_products=len(catalogue),
        train_events=len(train),
        holdout_events=len(holdout),
        new_products=int(catalogue["is_new"].sum()),
        quarantined=quarantine["reason"].value_counts().sort_index().to_dict(),
    )
    write_ingested(output_dir, catalogue, train, holdout, quarantine, summary)
    check_bad_fraction(catalogue_uri, len(raw_catalogue), quarantine, config.max_bad_fraction)
    check_bad_fraction(events_uri, len(raw_events), quarantine, config.max_bad_fraction)
    return summary


def validate_catalogue(raw: pd.DataFrame, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw catalogue rows into canonical products and quarantine records."""
    _require_columns(raw, CATALOGUE_REQUIRED, source)
    frame = raw.copy()
    for column, default in CATALOGUE_OPTIONAL.items():
        if column not in frame:
            frame[column] = default
    price = pd.to_numeric(frame["price"], errors="coerce")
    checks = [
        ("missing_field", _missing(frame, CATALOGUE_REQUIRED)),
        ("bad_encoding", _badly_encoded(frame)),
        ("bad_price", price.isna() | (price < 0) | ~np.isfinite(price.fillna(0))),
        ("duplicate_product", frame["product_id"].duplicated(keep="first")),
    ]
    reasons = _first_failure(checks, len(frame))
    good = reasons.isna()
    catalogue = frame.loc[good].assign(price=price[good].astype("float64"))
    catalogue["launch_date"] = pd.to_datetime(catalogue["launch_date"], utc=True, errors="coerce")
    for column in ("product_id", "title", "description", "category", "colour", "brand"):
        catalogue[column] = catalogue[column].fillna(CATALOGUE_OPTIONAL.get(column, "")).astype(str)
    columns = ["product_id", "title", "description", "category", "colour", "brand", "price", "launch_date"]
    return catalogue[columns].reset_index(drop=True), _quarantine(raw, reasons, source)


def validate_events(
    raw: pd.DataFrame, source: str, product_ids: set[str], config: IngestConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split raw event rows into canonical events (with weights) and quarantine records."""
    _require_columns(raw, EVENTS_REQUIRED, source)
    frame = raw.copy()
    timestamp = parse_timestamps(frame["timestamp"], config.earliest_timestamp, config.latest_timestamp)
    default_weight = frame["event_type"].map(config.event_weights.as_dict())
    weight = _weights(frame["weight"], default_weight) if "weight" in frame else default_weight
    local_times = _local_times(frame[LOCAL_TIME]) if LOCAL_TIME in frame else None
    checks = [
        ("missing_field", _missing(frame, EVENTS_REQUIRED)),
        ("bad_encoding", _badly_encoded(frame)),
        ("unknown_event_type", ~frame["event_type"].isin(EVENT_TYPES)),
        ("bad_timestamp", timestamp.isna()),
        ("bad_weight", ~(weight > 0) | ~(weight <= MAX_WEIGHT)),  # NaN fails both; inf and beyond float32 the second
        ("unknown_product", ~frame["product_id"].isin(product_ids)),
        *_context_checks(frame, timestamp, local_times, config),
        *_examination_checks(frame),
        ("duplicate_event", frame.duplicated(keep="first")),
    ]
    reasons = _first_failure(checks, len(frame))
    good = reasons.isna()
    events = pd.DataFrame(
        {
            "customer_id": frame.loc[good, "customer_id"].astype(str),
            "product_id": frame.loc[good, "product_id"].astype(str),
            "event_type": frame.loc[good, "event_type"].astype(str),
            "weight": weight[good].astype("float32"),
            "timestamp": timestamp[good],
        }
    )
    for column in EVENT_CONTEXT:
        if column in frame:
            values = local_times if column == LOCAL_TIME else _context_text(frame[column])
            events[column] = values[good]
    if EXAMINATION in frame:
        events[EXAMINATION] = _examinations(frame[EXAMINATION])[good].astype("float32")
    return events.reset_index(drop=True), _quarantine(raw, reasons, source)


def _examination_checks(frame: pd.DataFrame) -> list[tuple[str, pd.Series]]:
    """``bad_examination`` for a given value that is not a probability in (0, 1] (blank is unknown)."""
    if EXAMINATION not in frame:
        return []
    given = _context_text(frame[EXAMINATION]).notna()
    value = _examinations(frame[EXAMINATION])
    return [("bad_examination", given & ~((value > 0) & (value <= 1)).fillna(False))]


def _examinations(values: pd.Series) -> pd.Series:
    """The examination column as floats; blank, missing and unparseable values are NaN."""
    return pd.to_numeric(_context_text(values), errors="coerce").astype("float64")


def _context_checks(frame: pd.DataFrame, timestamp: pd.Series, local_times: pd.Series | None,
                    config: IngestConfig) -> list[tuple[str, pd.Series]]:
    """The reason codes of context values that are given but wrong (blank is unknown, not wrong);
    ``local_times``: the local_time column's wall clocks (:func:`_local_times`), None without that column."""
    checks = []
    for column, allowed in (("device", config.devices), ("channel", config.channels)):
        if column in frame:
            given = _context_text(frame[column])
            checks.append((f"bad_{column}", given.notna() & ~given.isin(allowed)))
    if "region" in frame:
        region = _context_text(frame["region"])
        valid = region.map(lambda text: region_valid(text, config) if isinstance(text, str) else True)
        checks.append(("bad_region", region.notna() & ~valid.astype(bool)))
    if local_times is not None:
        given = _context_text(frame[LOCAL_TIME]).notna()
        offset_s = (local_times - timestamp.dt.tz_localize(None)).dt.total_seconds()
        plausible = pd.Series(plausible_offsets(offset_s.to_numpy(np.float64)), index=frame.index)
        checks.append(("bad_local_time", given & timestamp.notna() & ~plausible))
    return checks


def region_valid(region: str, config: IngestConfig) -> bool:
    """A region code or name: printable, at most ``ingest.max_region_length`` characters."""
    return len(region) <= config.max_region_length and region.isprintable()


def plausible_offsets(offset_s: np.ndarray) -> np.ndarray:
    """Whether each wall-clock minus UTC offset (seconds; NaN: unparseable) is a time zone's: a whole number of
    quarter-hours, give or take ``LOCAL_TIME_TOLERANCE_S``, within ``UTC_OFFSET_RANGE_H``."""
    low, high = UTC_OFFSET_RANGE_H
    step = OFFSET_STEP_MIN * 60
    with np.errstate(invalid="ignore"):
        whole = np.abs(offset_s - np.round(offset_s / step) * step) <= LOCAL_TIME_TOLERANCE_S
        hours = offset_s / 3600
        return whole & (hours >= low - TOLERANCE_H) & (hours <= high + TOLERANCE_H)


def context_reasons(context: dict[str, object], now: pd.Timestamp, config: IngestConfig) -> dict[str, str]:
    """Ingest's verdict on one event's context values at UTC time ``now``, cheaply (no frame): the reason code
    of each refused value (the same rules as :func:`validate_events`; blank and None are unknown)."""
    reasons = {}
    for name in ("device", "channel", "region", LOCAL_TIME):
        text = _context_value(context.get(name))
        if text is None:
            continue
        if REPLACEMENT_CHARACTER in text:
            reasons[name] = "bad_encoding"
        elif name in ("device", "channel"):
            if text not in (config.devices if name == "device" else config.channels):
                reasons[name] = f"bad_{name}"
        elif name == "region":
            if not region_valid(text, config):
                reasons[name] = "bad_region"
        elif not _plausible_local_time(text, now):
            reasons[name] = "bad_local_time"
    return reasons


class PlainEvent(NamedTuple):
    """An event :func:`plain_event` accepted, with the values :func:`validate_events` gives it (``weight``: its
    float32; ``timestamp``: epoch seconds)."""

    customer_id: str
    product_id: str
    event_type: str
    weight: float
    timestamp: float


def plain_event(record: Mapping[str, object], product_ids: Container[str], config: IngestConfig,
                plausible: tuple[dt.datetime, dt.datetime]) -> PlainEvent | None:
    """Ingest's acceptance of one event of the plain shape, without a frame: microseconds, where a one-row
    frame through :func:`validate_events` costs milliseconds (the event API takes a click at a time).

    ``record``: the event's required fields, ``weight`` and context fields (absent or None: not given).
    Plain: the ids and the event type are text, the weight absent or a number, the timestamp a whole number
    (epoch seconds) or ISO 8601 text ``YYYY-MM-DDTHH:MM:SS[.ffffff][Z|±HH:MM]``, the context text; no text blank or
    badly encoded. A plain event that passes every rule of :func:`validate_events` (``plausible``: the
    timestamps' range, :func:`plausible_range`) comes back with that function's values. Anything else is
    None, refused or merely not plain: the caller then runs :func:`validate_events`, which decides and names
    the reason. So this never refuses what ingest accepts. Duplicates within a batch are the caller's to find.
    """
    if not _plain_values(record):
        return None
    customer_id, product_id, event_type = (record.get(name) for name in ("customer_id", "product_id", "event_type"))
    if not (isinstance(customer_id, str) and isinstance(product_id, str) and event_type in EVENT_TYPES
            and product_id in product_ids):
        return None
    weight = _plain_weight(record.get("weight"), getattr(config.event_weights, str(event_type)))
    moment = _plain_timestamp(record.get("timestamp"))
    if weight is None or moment is None or not plausible[0] <= moment <= plausible[1]:
        return None
    context = {name: record[name] for name in EVENT_CONTEXT if record.get(name) is not None}
    if context and context_reasons(context, pd.Timestamp(moment), config):
        return None
    return PlainEvent(customer_id, product_id, str(event_type), weight, moment.timestamp())


def plausible_range(config: IngestConfig) -> tuple[dt.datetime, dt.datetime]:
    """The range :func:`parse_timestamps` keeps, now, as aware datetimes, within it to the microsecond."""
    earliest, latest = _timestamp_bounds(config.earliest_timestamp, config.latest_timestamp)
    return earliest.ceil("us").to_pydatetime(), latest.floor("us").to_pydatetime()


def _plain_values(record: Mapping[str, object]) -> bool:
    """Every value None, text (neither blank nor badly encoded) or, for the weight and timestamp, a number."""
    for name, value in record.items():
        if isinstance(value, str):
            if not value.strip() or REPLACEMENT_CHARACTER in value:
                return False
        elif not (value is None or name in ("weight", "timestamp") and isinstance(value, (int, float))
                  and not isinstance(value, bool)):
            return False
    return True


def _plain_weight(given: object, default: float) -> float | None:
    """The weight ingest gives (its float32): the event type's when absent; None unless in (0, ``MAX_WEIGHT``]."""
    value = default if given is None else given
    if not isinstance(value, (int, float)) or not 0 < value <= MAX_WEIGHT:  # NaN fails too
        return None
    return float(np.float32(value))


def _plain_timestamp(given: object) -> dt.datetime | None:
    """A whole number (int or float) as epoch seconds, or text of the plain ISO 8601 form, as an aware UTC
    datetime; else None (a JSON body's integer may arrive as a float)."""
    try:
        if isinstance(given, (int, float)):
            return dt.datetime.fromtimestamp(int(given), tz=dt.timezone.utc) if float(given).is_integer() else None
        if not isinstance(given, str) or not PLAIN_ISO_TIMESTAMP.fullmatch(given):
            return None
        moment = dt.datetime.fromisoformat(given.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):  # no such date or time, or beyond what datetime holds
        return None
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _plausible_local_time(text: str, now: pd.Timestamp) -> bool:
    wall_clock = local_wall_clock(text)
    if wall_clock is None:
        return False
    offset_s = (wall_clock - now.tz_convert("UTC").tz_localize(None)).total_seconds()
    return bool(plausible_offsets(np.array([offset_s]))[0])


def _context_value(value: object) -> str | None:
    """One context value as ingest reads it: stripped text, blank and None as None."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _context_text(values: pd.Series) -> pd.Series:
    """A context column as text, blank and missing as null."""
    text = values.astype("string").str.strip()
    return text.where(text.ne("").fillna(False)).astype(object).where(lambda column: column.notna(), None)


def _local_times(values: pd.Series) -> pd.Series:
    """Wall-clock times (naive): a value with an offset is read at that offset; unparseable ones are NaT.

    Exactly :func:`local_wall_clock` of each value, at numpy speed for the usual form (an ISO 8601 date and time
    with or without an offset, whose wall clock is the text before the offset: 10 s for ML-1M's 1M events one
    by one); any other text is read one by one."""
    text = _context_text(values)
    wall_clock = text.str.extract(ISO_WALL_CLOCK, expand=False)
    parsed = pd.to_datetime(wall_clock, format="ISO8601", errors="coerce")
    parsed = parsed.where(_holds_nanoseconds(parsed))  # as local_wall_clock
    other = text.notna() & wall_clock.isna()
    if not other.any():
        return parsed
    one_by_one = pd.to_datetime([local_wall_clock(value) for value in text[other]])
    finer = np.promote_types(parsed.dtype, one_by_one.dtype)  # pandas infers each one's unit from its values
    parsed = parsed.astype(finer)
    parsed[other] = one_by_one.astype(finer)
    return parsed


def local_wall_clock(text: object) -> pd.Timestamp | None:
    """A local time as its naive wall clock (read at its offset, if it has one); None when unparseable, or
    outside the years a nanosecond timestamp holds (1677-2262: "01" reads as year 1, no shop's local time)."""
    if not isinstance(text, str):
        return None
    try:
        moment = pd.Timestamp(text)
    except (ValueError, TypeError):
        return None
    wall_clock = moment.tz_localize(None) if moment.tzinfo is not None else moment
    return wall_clock if _holds_nanoseconds(wall_clock) else None


def _holds_nanoseconds(times: pd.Timestamp | pd.Series) -> bool | pd.Series:
    """Whether each time lies within the years a nanosecond timestamp holds (1677-2262)."""
    return (times >= pd.Timestamp.min) & (times <= pd.Timestamp.max)


def _weights(given: pd.Series, default: pd.Series) -> pd.Series:
    """Explicit weights where given; the event type's weight where blank. Unparseable → NaN (bad_weight)."""
    blank = given.isna() | given.astype("string").str.strip().eq("").fillna(True)
    return pd.to_numeric(given.where(~blank), errors="coerce").where(~blank, default)


def parse_timestamps(values: pd.Series, earliest: str = "1990-01-01", latest: str | None = None) -> pd.Series:
    """Parse ISO 8601 strings or epoch seconds to UTC; unparseable or out-of-range values become NaT.

    The range is [``earliest``, ``latest``]; ``latest`` defaults to one day from now (clock skew).
    """
    text = values.astype("string")
    numeric = pd.to_numeric(text, errors="coerce")
    from_epoch = pd.to_datetime(numeric.where(numeric.notna()), unit="s", utc=True, errors="coerce")
    from_text = pd.to_datetime(text.where(numeric.isna()), utc=True, errors="coerce", format="ISO8601")
    parsed = from_epoch.fillna(from_text)
    lower, upper = _timestamp_bounds(earliest, latest)
    return parsed.where((parsed >= lower) & (parsed <= upper))


def _timestamp_bounds(earliest: str, latest: str | None) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The plausible timestamps' range, UTC: [``earliest``, ``latest``], ``latest`` by default a day from now."""
    upper = pd.Timestamp(latest, tz="UTC") if latest else pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    return pd.Timestamp(earliest, tz="UTC"), upper


def choose_split_time(timestamps: pd.Series, config: IngestConfig) -> pd.Timestamp:
    """The configured split time, or the time that leaves ``holdout_fraction`` of events after it."""
    if config.split_time:
        split = pd.Timestamp(config.split_time)
        return split.tz_localize("UTC") if split.tzinfo is None else split.tz_convert("UTC")
    return timestamps.quantile(1.0 - config.holdout_fraction)


def split_events(events: pd.DataFrame, split_time: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train = strictly before ``split_time``; holdout = at or after it."""
    before = events["timestamp"] < split_time
    ordered = ["customer_id", "timestamp"]
    return (
        events[before].sort_values(ordered, kind="stable").reset_index(drop=True),
        events[~before].sort_values(ordered, kind="stable").reset_index(drop=True),
    )


def _require_columns(raw: pd.DataFrame, required: tuple[str, ...], source: str) -> None:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise IngestError(f"{source}: missing required columns {missing}; found {list(raw.columns)}")


def _missing(frame: pd.DataFrame, required: tuple[str, ...]) -> pd.Series:
    """Rows where a required field is absent or blank."""
    values = frame[list(required)]
    blank = values.apply(lambda column: column.astype("string").str.strip().eq("").fillna(False))
    return values.isna().any(axis=1) | blank.any(axis=1)


def _badly_encoded(frame: pd.DataFrame) -> pd.Series:
    """Rows with text that was not valid UTF-8 (decoded with U+FFFD replacement characters)."""
    text = frame.select_dtypes(include=["object", "string"])
    if text.empty:
        return pd.Series(False, index=frame.index)
    return text.apply(lambda column: column.astype("string").str.contains(REPLACEMENT_CHARACTER, regex=False)
                      .fillna(False)).any(axis=1)


def check_bad_fraction(source: str, rows: int, quarantine: pd.DataFrame, limit: float) -> None:
    """Fail the run, naming the reasons, when more than ``limit`` of a file's rows are unusable."""
    bad = int((quarantine["source"] == source).sum()) if len(quarantine) else 0
    if rows and bad / rows > limit:
        reasons = quarantine.loc[quarantine["source"] == source, "reason"].value_counts().to_dict()
        raise IngestError(
            f"{source}: {bad} of {rows} rows ({bad / rows:.1%}) are unusable, more than the allowed "
            f"{limit:.1%} (ingest.max_bad_fraction); reasons: {reasons}. The quarantine was written for inspection."
        )


def _first_failure(checks: list[tuple[str, pd.Series]], length: int) -> pd.Series:
    """The first failing check's reason code per row (None where every check passes)."""
    reasons = pd.Series([None] * length, dtype="object")
    for reason, failed in checks:
        reasons = reasons.where(reasons.notna() | ~failed.to_numpy(), reason)
    return reasons


def _quarantine(raw: pd.DataFrame, reasons: pd.Series, source: str) -> pd.DataFrame:
    bad = reasons.notna().to_numpy()
    rows = raw.loc[bad]
    return pd.DataFrame(
        {
            "source": source,
            "row_number": np.flatnonzero(bad).astype("int64") + 1,  # 1-based data row, header excluded
            "reason": reasons[bad].astype(str).to_numpy(),
            "raw": [r.to_json() for _, r in rows.astype(str).iterrows()],
        }
    )


def write_ingested(
    output_dir: str,
    catalogue: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    quarantine: pd.DataFrame,
    summary: IngestSummary,
) -> None:
    """Write the ingest stage's layout; also used by evaluation protocols that re-split ingested data."""
    storage.makedirs(output_dir)
    storage.write_parquet(catalogue, storage.join(output_dir, artifacts.CATALOGUE_FILE))
    storage.write_parquet(train, storage.join(output_dir, artifacts.TRAIN_EVENTS_FILE))
    storage.write_parquet(holdout, storage.join(output_dir, artifacts.HOLDOUT_EVENTS_FILE))
    storage.write_parquet(quarantine, storage.join(output_dir, artifacts.QUARANTINE_FILE))
    storage.write_json(storage.join(output_dir, artifacts.INGEST_SUMMARY_FILE), summary.as_dict())
