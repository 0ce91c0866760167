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
