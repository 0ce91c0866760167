"""The event API's checks: ingest's rules on a posted batch, and the server's clock for a missing timestamp."""

from __future__ import annotations

import pytest

from fashionrec.config import IngestConfig, OnlineConfig
from fashionrec.online.events import check_events

NOW = 1_796_463_237.123456


def test_an_event_without_a_timestamp_is_stamped_now_to_the_microsecond() -> None:
    """Impressions carry microseconds; so must a server-stamped click, or a log cannot tell whether a
    product page was opened by it (both land in the same second)."""
    events, rejections = check_events([{"customer_id": "C1", "product_id": "P1", "event_type": "click"}],
                                      {"P1"}, IngestConfig(), OnlineConfig(), now=NOW)
    assert rejections == [] and len(events) == 1
    assert events[0].timestamp == pytest.approx(NOW, abs=1e-6)


def test_a_given_timestamp_is_kept() -> None:
    events, _ = check_events([{"customer_id": "C1", "product_id": "P1", "event_type": "click",
                               "timestamp": "1790000000"}], {"P1"}, IngestConfig(), OnlineConfig(), now=NOW)
    assert events[0].timestamp == 1_790_000_000.0


CLICK = {"customer_id": "C1", "product_id": "P1", "event_type": "click"}


def test_a_plain_batch_is_judged_event_by_event_without_a_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The usual post (a click or two, well formed) never builds ingest's frame: that costs milliseconds."""
    def no_frame(*_: object) -> None:
        raise AssertionError("a plain batch went through validate_events")

    monkeypatch.setattr("fashionrec.online.events.validate_events", no_frame)
    events, rejections = check_events([CLICK, {**CLICK, "event_type": "add_to_bag", "device": "mobile"}], {"P1"},
                                      IngestConfig(), OnlineConfig(), now=NOW)
    assert rejections == []
    assert [(e.event_type, e.weight) for e in events] == [("click", 1.0), ("add_to_bag", 3.0)]


def test_a_batch_with_a_repeat_or_a_bad_event_gets_ingests_reasons_and_keeps_the_good_ones() -> None:
    batch = [CLICK, CLICK, {**CLICK, "product_id": "P9"}, {**CLICK, "event_type": "purchase"}]
    events, rejections = check_events(batch, {"P1"}, IngestConfig(), OnlineConfig(), now=NOW)
    assert [(r.index, r.reason) for r in rejections] == [(1, "duplicate_event"), (2, "unknown_product")]
    assert [e.event_type for e in events] == ["click", "purchase"]


def test_an_overlong_id_is_refused_even_in_a_plain_batch() -> None:
    long_id = "C" * (OnlineConfig().max_id_length + 1)
    events, rejections = check_events([{**CLICK, "customer_id": long_id}], {"P1"}, IngestConfig(), OnlineConfig(),
                                      now=NOW)
    assert events == [] and [(r.index, r.reason) for r in rejections] == [(0, "id_too_long")]


def test_a_lone_surrogate_is_refused_as_bad_encoding_on_either_path() -> None:
    """JSON can spell a lone surrogate ("\\ud800"); no UTF-8 log can hold one. In a plain batch (customer id) and
    in one that needs ingest's frame (context), it is ingest's bad encoding, and the good events are kept."""
    batch = [{**CLICK, "customer_id": "C\ud800"}, CLICK, {**CLICK, "customer_id": "C2", "device": "mobile\udfff"}]
    events, rejections = check_events(batch, {"P1"}, IngestConfig(), OnlineConfig(), now=NOW)
    assert [(r.index, r.reason) for r in rejections] == [(0, "bad_encoding"), (2, "bad_encoding")]
    assert [e.customer_id for e in events] == ["C1"]
    events, rejections = check_events(batch[:1], {"P1"}, IngestConfig(), OnlineConfig(), now=NOW)
    assert events == [] and [(r.index, r.reason) for r in rejections] == [(0, "bad_encoding")]
