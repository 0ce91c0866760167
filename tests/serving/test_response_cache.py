"""Triton's response cache on the published ensembles, and the statistics that show it, on a real server.

The cache is off by default (``serving.response_cache_mb``); this module serves its own repository with it
on: a repeated request is answered without running a step, and a new version never gets the old answers."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tritonclient.grpc

from fashionrec.app.client import FashionrecClient
from fashionrec.config import ServingConfig
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving import statistics
from fashionrec.serving.server import TritonServer

if TYPE_CHECKING:
    from conftest import Catalogue


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue, serving_config: ServingConfig,
           export_writer: Callable) -> Iterator[tuple[Path, TritonServer, ServingConfig]]:
    """Version 1 of the catalogue published and served with a 16 MiB response cache (explicit model control)."""
    serving = dataclasses.replace(serving_config, response_cache_mb=16)
    folder = tmp_path_factory.mktemp("cached")
    export = export_writer(folder / "v1", catalogue.product_ids, catalogue.embeddings, catalogue.is_new)
    published = publish_model_repository(*export, str(folder / "repo"), serving)
    with TritonServer(published.path, serving, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield Path(published.path), server, serving


def _counters(server: TritonServer) -> dict[str, statistics.ModelCounters]:
    client = tritonclient.grpc.InferenceServerClient(server.grpc_url)
    try:
        return statistics.read_statistics(client)
    finally:
        client.close()


def test_a_repeated_anonymous_similar_request_is_answered_from_the_cache_without_running_a_step(
        cached: tuple[Path, TritonServer, ServingConfig], catalogue: Catalogue) -> None:
    _, server, serving = cached
    hero, other = catalogue.product_ids[11], catalogue.product_ids[12]
    with FashionrecClient(server.grpc_url, "grpc", serving) as client:
        before = _counters(server)
        answers = [client.similar(hero, (), 5) for _ in range(4)]
        different = client.similar(other, (), 5)  # one input byte differs: computed, not served from the cache
        seen = statistics.window(before, _counters(server))
    assert all(answer == answers[0] for answer in answers) and different != answers[0]
    similar = seen[serving.similar_model_name]
    assert similar.requests == 5
    assert similar.cache_counts == {"cache_hit": 3, "cache_miss": 2}
    assert seen[serving.ranking_model_name].requests == 2  # a hit runs no step


def test_a_new_version_answers_the_same_request_afresh(
        cached: tuple[Path, TritonServer, ServingConfig], catalogue: Catalogue, tmp_path: Path,
        export_writer: Callable) -> None:
    repository, server, serving = cached
    history = catalogue.product_ids[:6]
    with FashionrecClient(server.grpc_url, "grpc", serving) as client:
        v1 = [client.recommend(history, 5) for _ in range(2)]
        shuffled = catalogue.embeddings[np.random.default_rng(3).permutation(len(catalogue.embeddings))]
        export = export_writer(tmp_path / "v2", catalogue.product_ids, shuffled, catalogue.is_new)
        publish_model_repository(*export, str(repository), serving, server_url=server.grpc_url)
        before = _counters(server)
        v2 = [client.recommend(history, 5) for _ in range(2)]
        seen = statistics.window(before, _counters(server))
    assert v1[0] == v1[1] and v2[0] == v2[1] and v2[0] != v1[0]
    assert seen[serving.model_name].cache_counts == {"cache_hit": 1, "cache_miss": 1}  # v2's own entry


def test_statistics_break_a_window_of_requests_down_by_step(
        cached: tuple[Path, TritonServer, ServingConfig], catalogue: Catalogue) -> None:
    _, server, serving = cached
    history = catalogue.product_ids[:5]
    with FashionrecClient(server.grpc_url, "grpc", serving) as client:
        before = _counters(server)
        for n in range(3):
            client.recommend(history, 3 + n)  # distinct requests: no cache hit
        seen = statistics.window(before, _counters(server))
    steps = [serving.model_name, serving.ranking_model_name]  # recommend's one python step pools and ranks
    assert set(seen) == set(steps)  # idle models (customer_vector: `similar` only) are left out of the window
    rows = dict(statistics.breakdown_rows(seen, steps))
    for name in steps:
        requests, batch, total, *phases = rows[name]
        assert requests == 3 and 1.0 <= batch <= 3.0
        assert total > 0 and all(us >= 0 for us in phases)
    # the ensemble's time includes its steps'
    assert rows[serving.model_name][2] >= rows[serving.ranking_model_name][2]
