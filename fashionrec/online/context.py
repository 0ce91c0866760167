"""The context a page request carries: the visitor's device, region and local time, for context-aware ranking.

Every page (the ``/v1`` JSON API and the storefront) takes the optional query parameters ``device``,
``region`` and ``local_time`` (the customer's wall-clock time, ISO 8601, with or without its UTC offset).
They are checked with the event API's rules (ingest's), as the context of an event posted now: the events
the page leads to are logged with the same context, so what a page accepts its events are accepted with.
A refused value is :class:`~fashionrec.online.views.BadContext` (422), naming the parameter; a blank one
is unknown. ``channel`` is not a model input, so pages do not take it.

The checked context (:class:`~fashionrec.online.views.PageContext`) goes to every Triton call the page
makes (its ``request``: the local time's hour and weekday, read off its wall clock whatever its offset)
and is logged with the page's impressions (its ``logged`` columns), so experiment reports can slice by
it. A page without context asks Triton exactly as before (``NO_CONTEXT`` sends no context input).
"""

from __future__ import annotations

import pandas as pd

from fashionrec.config import IngestConfig
from fashionrec.online.events import check_context
from fashionrec.online.views import NO_CONTEXT, BadContext, PageContext
from fashionrec.stages.ingest import LOCAL_TIME_TOLERANCE_S, OFFSET_STEP_MIN, UTC_OFFSET_RANGE_H

PARAMETERS = ("device", "region", "local_time")  # the query parameters of a page's context, in this order
CONTEXT_MAX_LENGTH = 128  # characters of a context value: checked before ingest's rules (which are stricter)
SECONDS_PER_MINUTE = 60


def page_context(device: str | None, region: str | None, local_time: str | None, ingest: IngestConfig,
                 now: float) -> PageContext:
    """The context the query parameters name, checked with the event API's rules at ``now`` (epoch seconds);
    :class:`BadContext` naming the first refused parameter."""
    if device is None and region is None and local_time is None:  # most pages: nothing to check
        return NO_CONTEXT
    given = {"device": device, "region": region, "local_time": local_time}
    for name, value in given.items():
        if value is not None and len(value) > CONTEXT_MAX_LENGTH:
            raise BadContext(name, "too_long", f"{name} has {len(value)} characters; at most {CONTEXT_MAX_LENGTH}")
    values, reasons = check_context(given, ingest, now)
    for name in PARAMETERS:
        if name in reasons:
            raise BadContext(name, reasons[name], _explanation(name, reasons[name], ingest))
    wall_clock = values.get("local_time")
    if wall_clock is None or pd.isna(wall_clock):
        return PageContext(values.get("device"), values.get("region"))
    return PageContext(values.get("device"), values.get("region"), local_time.strip(), wall_clock.hour,
                       wall_clock.weekday())


def _explanation(name: str, reason: str, ingest: IngestConfig) -> str:
    """What a refused parameter must be (never the value itself: it may be long or hostile)."""
    low, high = UTC_OFFSET_RANGE_H
    rules = {
        "device": f"one of {', '.join(ingest.devices)}",
        "region": f"a region code or name of at most {ingest.max_region_length} printable characters",
        "local_time": (f"the customer's wall-clock time now, ISO 8601 (with or without its UTC offset): a multiple "
                       f"of {OFFSET_STEP_MIN} minutes from UTC within UTC{low:+g}..UTC{high:+g}, give or take "
                       f"{LOCAL_TIME_TOLERANCE_S // SECONDS_PER_MINUTE} minutes"),
    }
    return f"{name} must be {rules[name]}, or blank for unknown ({reason})"
