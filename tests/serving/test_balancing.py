"""Per-request load balancing over several Triton servers: a gRPC channel spreads its calls round robin over
every address its target resolves to (in Kubernetes, a headless Service's pod IPs), instead of pinning
them all to one server as a plain ClusterIP connection does."""

from __future__ import annotations

import re
import urllib.request

from fashionrec.app.client import FashionrecClient
from fashionrec.serving.server import TritonServer
from tests.serving.counters import read_until

CALLS = 40


def _successes(server: TritonServer, model: str) -> int:
    text = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode()
    found = re.search(rf'^nv_inference_request_success{{model="{model}",version="\d+"}} (\d+)', text, re.MULTILINE)
    return int(found.group(1)) if found else 0


def test_one_grpc_channel_spreads_its_calls_over_every_server(published, triton, serving_config, catalogue):
    with TritonServer(published.path, serving_config, http_port=0, grpc_port=0, metrics_port=0) as second:
        servers = (triton, second)
        before = [_successes(s, serving_config.model_name) for s in servers]
        target = "ipv4:" + ",".join(s.grpc_url for s in servers)  # two addresses, as DNS gives a headless Service's
        with FashionrecClient(target, "grpc", serving_config) as client:
            for _ in range(CALLS):
                assert client.recommend(catalogue.product_ids[:3], 5)
        served = read_until(lambda: [_successes(s, serving_config.model_name) - b
                                     for s, b in zip(servers, before, strict=True)],
                            lambda counts: sum(counts) >= CALLS)
    assert sum(served) == CALLS
    assert min(served) >= CALLS // 4, f"calls per server {served}: the channel did not balance"
