"""The error accounting the alerts rely on, drilled on a real tritonserver: malformed requests are the
caller's (4xx, counted as refusals) and leave the server-failure rate of k8s/base/prometheusrule.yaml at 0.

Triton 2.51 counts a failed ensemble request twice in nv_inference_request_failure and a refusal as a
success of the python model that refused it; the recording rule ``fashionrec:triton_server_failures``
therefore takes half the ensemble failures minus the refusals. This test computes the same from the
server's own counters.
"""

from __future__ import annotations

import re
import urllib.request

import pytest

from fashionrec.app.client import FashionrecClient, RequestRejected
from fashionrec.contract.validation import REFUSED_METRIC
from tests.serving.counters import read_until

MALFORMED = 100
ENSEMBLES = ("recommend", "rerank", "similar")
ENSEMBLE_STEPS = ("customer_vector", "rank_products", "blend_hero")  # the rule's refusal models


def _counters(metrics_url: str) -> dict[str, float]:
    """Per family, the sum over the series of the ensembles (requests) or their steps (refusals)."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    totals = {"success": 0.0, "failure": 0.0, "refused": 0.0}
    for family, key, models in (("nv_inference_request_success", "success", ENSEMBLES),
                                ("nv_inference_request_failure", "failure", ENSEMBLES),
                                (REFUSED_METRIC, "refused", ENSEMBLE_STEPS)):
        for labels, value in re.findall(rf"^{family}{{([^}}]*)}} (\S+)$", text, re.MULTILINE):
            if re.search(r'model="([^"]+)"', labels).group(1) in models:
                totals[key] += float(value)
    return totals


def _settled_delta(metrics_url: str, before: dict[str, float], requests: int) -> dict[str, float]:
    """The counters' change since ``before``, once all ``requests`` are counted (see tests/serving/counters.py)."""
    def delta() -> dict[str, float]:
        after = _counters(metrics_url)
        return {key: after[key] - before[key] for key in after}
    return read_until(delta, lambda d: d["success"] + d["failure"] / 2 >= requests)


def test_malformed_requests_are_refused_and_never_count_as_server_failures(triton, serving_config, catalogue):
    with FashionrecClient(triton.grpc_url, "grpc", serving_config) as fashion:
        _drill(fashion, triton, catalogue)


def _drill(fashion: FashionrecClient, triton, catalogue) -> None:
    history = catalogue.product_ids[:3]
    bad_calls = [lambda: fashion.recommend(history, 0),  # TOP_K out of range
                 lambda: fashion.recommend(history, 5, candidate_set="no-such-set"),
                 lambda: fashion.rerank(history, ["NO-SUCH-PRODUCT"]),
                 lambda: fashion.similar(catalogue.product_ids[0], history, 5, alpha=2.0)]
    before = _counters(triton.metrics_url)
    refused = 0
    for i in range(MALFORMED):
        with pytest.raises(RequestRejected):
            bad_calls[i % len(bad_calls)]()
        refused += 1
    assert fashion.recommend(history, 5)  # and the server still answers
    delta = _settled_delta(triton.metrics_url, before, MALFORMED + 1)
    assert refused == MALFORMED and delta["refused"] == MALFORMED
    server_failures = max(delta["failure"] / 2 - delta["refused"], 0.0)  # the recording rule's arithmetic
    assert server_failures == 0
    assert delta["success"] + delta["failure"] / 2 == MALFORMED + 1  # every request counted once
