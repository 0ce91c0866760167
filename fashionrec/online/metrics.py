"""The service's Prometheus metrics, in a registry of its own (one per app, so tests can run several).

What an operator alerts on: request counts by endpoint and status, latency histograms per endpoint,
Triton errors by touchpoint and kind, the rows of each call to Triton, pages served from the fallback,
events accepted or rejected (by ingest's reason code), and how many long-lived objects the garbage
collector no longer walks.
"""

from __future__ import annotations

import gc

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Seconds; dense below 50 ms, where a page built from a few Triton calls lands on a healthy server.
BATCH_ROWS_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class ShopMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("fashionrec_shop_requests_total", "Requests answered, by endpoint and HTTP status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("fashionrec_shop_request_seconds", "Time to answer a request, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.triton_errors = Counter("fashionrec_shop_triton_errors_total",
                                     "Triton calls that failed, by touchpoint and kind (unavailable, refused)",
                                     ["touchpoint", "kind"], registry=self.registry)
        self.triton_batch_rows = Histogram("fashionrec_shop_triton_batch_rows",
                                           "Rows of each call to Triton: requests in flight together go as one",
                                           buckets=BATCH_ROWS_BUCKETS, registry=self.registry)
        self.fallbacks = Counter("fashionrec_shop_fallbacks_total",
                                 "Carousels and pages served from the trending list because Triton did not answer",
                                 ["touchpoint"], registry=self.registry)
        self.events = Counter("fashionrec_shop_events_total", "Posted events, by outcome (accepted or the "
                              "rejection's reason code)", ["outcome"], registry=self.registry)
        self.frozen = Gauge("fashionrec_shop_frozen_objects", "Objects moved out of the garbage collector's sight "
                            "(gc.freeze) at start and after each new version or catalogue", registry=self.registry)
        self.frozen.set_function(gc.get_freeze_count)

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)
