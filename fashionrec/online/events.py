"""Shop events as the service takes them: checked with ingest's own rules, so the log trains as it is.

A batch posted to the event API is split into accepted :class:`ShopEvent` s and rejections, each with
ingest's reason code (``unknown_event_type``, ``bad_timestamp``, ``unknown_product``, ...) and the
event's position in the batch. What the service accepts, ingest will accept when it reads the log.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from fashionrec.config import IngestConfig, OnlineConfig
from fashionrec.stages.ingest import (EVENT_CONTEXT, EVENTS_REQUIRED, LOCAL_TIME, context_reasons,
                                      local_wall_clock, plain_event, plausible_range, validate_events)

ID_TOO_LONG = "id_too_long"  # the service's own reason, besides ingest's: an id longer than online.max_id_length
EVENT_SOURCE = "event-api"  # the source ingest's checks name


class ShopEvent(NamedTuple):
    """One accepted event, in the canonical events schema (``timestamp``: epoch seconds, UTC).

    A named tuple, not a frozen dataclass: every page reads the customer's whole stored history (up to
    ``online.max_history_events``), and a tuple is built several times faster than a frozen dataclass.
    """

    customer_id: str
    product_id: str
    event_type: str
    timestamp: float
    weight: float

    def as_record(self) -> dict[str, object]:
        return self._asdict()


@dataclass(frozen=True)
class Rejection:
    """An event the service refused: its position in the posted batch and ingest's reason code."""

    index: int
    reason: str


def check_events(raw: Sequence[Mapping[str, object]], product_ids: set[str], ingest: IngestConfig,
                 online: OnlineConfig, now: float | None = None) -> tuple[list[ShopEvent], list[Rejection]]:
    """Split a posted batch into accepted events and rejections (ingest's rules, plus the id length).

    A missing ``timestamp`` means now (``now``, default the clock); the weight defaults to the event
    type's, as in ingest. Duplicates within the batch are rejected as ``duplicate_event``.
    """
    now = time.time() if now is None else now
    given = [{**_defaults(event, now), **{name: event.get(name) for name in EVENT_CONTEXT}} for event in raw]
    records = [{name: _decodable(value) for name, value in record.items()} for record in given]
    plain = _plain_batch(records, product_ids, ingest, online)
    if plain is not None:
        return plain, []
    too_long = [i for i, record in enumerate(records) if _longest_id(record) > online.max_id_length]
    frame = _events_frame(records)
    frame.loc[too_long, "customer_id"] = None  # checked below as id_too_long, before ingest's reasons
    accepted, quarantined = validate_events(frame, EVENT_SOURCE, product_ids, ingest)
    reasons = dict(zip(quarantined["row_number"] - 1, quarantined["reason"], strict=True))
    reasons.update({i: ID_TOO_LONG for i in too_long})
    rejections = [Rejection(int(i), str(reason)) for i, reason in sorted(reasons.items())]
    events = [ShopEvent(row.customer_id, row.product_id, row.event_type, row.timestamp.timestamp(), float(row.weight))
              for row in accepted.itertuples(index=False)]
    return events, rejections


def _plain_batch(records: Sequence[Mapping[str, object]], product_ids: set[str], ingest: IngestConfig,
                 online: OnlineConfig) -> list[ShopEvent] | None:
    """The batch's events when ingest's per-event check (:func:`~fashionrec.stages.ingest.plain_event`) accepts
    every one and none repeats another; None otherwise, and the frame decides (the usual post, one click,
    takes microseconds this way instead of a frame's milliseconds)."""
    plausible = plausible_range(ingest)
    accepted = [plain_event(record, product_ids, ingest, plausible) if _longest_id(record) <= online.max_id_length
                else None for record in records]
    if any(event is None for event in accepted) or len({tuple(record.values()) for record in records}) < len(records):
        return None  # plain values only from here on, so every record hashes
    return [ShopEvent(e.customer_id, e.product_id, e.event_type, e.timestamp, e.weight) for e in accepted if e]


def check_context(context: Mapping[str, object], ingest: IngestConfig,
                  now: float) -> tuple[dict[str, object], dict[str, str]]:
    """A page request's context (``device``, ``region``, ``local_time``, ...: None for absent) checked with ingest's
    rules as the context of an event posted ``now`` (epoch seconds), since the events the page leads to are
    logged with it; ingest's per-request check (:func:`~fashionrec.stages.ingest.context_reasons`), which
    costs microseconds where a one-row frame through ``validate_events`` costs milliseconds.

    Returns each given value as ingest reads it (text stripped, blank as None; ``local_time`` as its naive
    wall-clock Timestamp, None when blank) and ingest's reason code for each refused one (``bad_device``,
    ``bad_region``, ``bad_local_time``, ``bad_encoding``).
    """
    reasons = context_reasons(dict(context), pd.Timestamp(now, unit="s", tz="UTC"), ingest)
    values = {}
    for name, value in context.items():
        if value is None or name in reasons:
            continue
        text = str(value).strip() or None
        values[name] = local_wall_clock(text) if name == LOCAL_TIME and text else text
    return values, reasons


def _decodable(value: object) -> object:
    """Text as ingest reads undecodable bytes: a lone surrogate, which a JSON body can spell (``"\\ud800"``) but no
    UTF-8 file or Parquet column can hold, becomes U+FFFD, so that ingest refuses the event as ``bad_encoding``
    (accepted, it would stop the event log's roll, and a frame of it cannot even be built)."""
    if isinstance(value, str) and not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value


def _events_frame(records: Sequence[Mapping[str, object]]) -> pd.DataFrame:
    """The records (the required fields and the weight, defaults filled in, and the context fields) as ingest
    checks them: with the context columns any posted event gives."""
    context = [column for column in EVENT_CONTEXT if any(record[column] is not None for record in records)]
    return pd.DataFrame(records, columns=[*EVENTS_REQUIRED, "weight", *context]).astype(object)


def _defaults(event: Mapping[str, object], now: float) -> dict[str, object]:
    row = {key: event.get(key) for key in (*EVENTS_REQUIRED, "weight")}
    if row["timestamp"] is None:  # to the microsecond, as impressions are: a log orders clicks against pages
        row["timestamp"] = _iso_microseconds(now) if math.isfinite(now) else None
    return row


def _iso_microseconds(seconds: float) -> str:
    """Epoch ``seconds`` as ISO 8601 UTC to the microsecond (a float's text would round through nanoseconds)."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).isoformat(timespec="microseconds")


def _longest_id(row: Mapping[str, object]) -> int:
    return max((len(str(row[key])) for key in ("customer_id", "product_id") if row[key] is not None), default=0)


def history_inputs(events: Iterable[ShopEvent]) -> tuple[list[str], list[str], list[int]]:
    """A history's product ids, event types and timestamps (epoch seconds), oldest first, as Triton takes them."""
    ordered = list(events)
    return ([e.product_id for e in ordered], [e.event_type for e in ordered], [int(e.timestamp) for e in ordered])


def context_of(event: Mapping[str, object]) -> dict[str, str | None]:
    """An accepted event's context as logged (``device``, ``channel``, ``region``, ``local_time``): the posted
    text, stripped; blank or absent as None (ingest's rules have checked it)."""
    values = {column: event.get(column) for column in EVENT_CONTEXT}
    return {column: (str(value).strip() or None) if value is not None else None for column, value in values.items()}
