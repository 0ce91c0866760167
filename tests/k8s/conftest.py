"""Shared by the manifest and dashboard tests: what the shop service exports."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def shop_exposition() -> str:
    """The shop's Prometheus exposition text with one child of every metric (so each metric's samples
    appear: counters as name_total, histograms as name_bucket/_sum/_count); label values are placeholders."""
    from prometheus_client.metrics import MetricWrapperBase

    from fashionrec.online.metrics import ShopMetrics

    metrics = ShopMetrics()
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase) and metric._labelnames:  # one without labels is shown already
            child = metric.labels(*["x"] * len(metric._labelnames))
            if hasattr(child, "observe"):
                child.observe(0.1)
            else:
                child.inc()
    return metrics.exposition().decode()
