"""Hot model updates on a REAL tritonserver: publish v2 and roll back under a steady request stream.

Zero failed requests is the bar: the ensembles switch atomically while the previous version's steps
stay loaded, and every answer equals the numpy reference of exactly one version (never a mix).
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fashionrec.app.client import FashionrecClient, History, RecommendError
from fashionrec.config import ServingConfig
from fashionrec.repository.experiments import EXPERIMENT_FILE, Experiment
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import publish_model_repository
from fashionrec.repository import versions
from fashionrec.repository.check import InvalidVersion
from fashionrec.serving.server import TritonServer

if TYPE_CHECKING:
    from conftest import Catalogue

HISTORY = History(["P000003", "P000150", "P000042"], weights=[1.0, 3.0, 5.0])
K = 10
STREAM_CLIENTS = 3
AFTER_SWITCH = 20  # answers each client must get after a switch returned, before the stream stops
TWO_STEP_REPOSITORY = Path(__file__).parent / "data" / "two_step_repository.tar.xz"  # made as data/README.md says


def expected_ids(product_ids: list[str], embeddings: np.ndarray, half_life_events: float) -> list[str]:
    """The recommend answer for HISTORY under one version's table (float64, no fashionrec code)."""
    rows = [product_ids.index(p) for p in HISTORY.product_ids]
    decay = 0.5 ** (np.arange(len(rows))[::-1] / half_life_events)
    vector = np.average(embeddings[rows].astype(np.float64), axis=0, weights=np.array(HISTORY.weights) * decay)
    dots = embeddings.astype(np.float64) @ vector
    return [product_ids[i] for i in sorted(range(len(dots)), key=lambda i: (-dots[i], i))[:K]]


@dataclass
class Stream:
    """Clients asking the same question in a loop until told to stop; every answer and failure kept."""

    url: str
    serving: ServingConfig
    answers: list[list[str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=lambda: [0] * STREAM_CLIENTS)
    stop: threading.Event = field(default_factory=threading.Event)

    def _run(self, slot: int) -> None:
        with FashionrecClient(self.url, "grpc", self.serving) as client:
            while not self.stop.is_set():
                try:
                    self.answers.append([r.product_id for r in client.recommend(HISTORY, K)])
                except RecommendError as error:
                    self.failures.append(str(error))
                self.counts[slot] += 1

    def around(self, action: Callable[[], object]) -> list[list[str]]:
        """Run ``action`` while the stream flows; keep streaming AFTER_SWITCH answers per client after it."""
        threads = [threading.Thread(target=self._run, args=(slot,)) for slot in range(STREAM_CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            while min(self.counts) < 3:  # the stream is flowing before the switch
                self.stop.wait(0.01)
            action()
            marks = list(self.counts)
            while any(now - mark < AFTER_SWITCH for now, mark in zip(self.counts, marks, strict=True)):
                self.stop.wait(0.01)
            tail = self.answers[-STREAM_CLIENTS:]
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
        return tail


@pytest.fixture(scope="module")
def versioned(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue, serving_config: ServingConfig,
              export_writer: Callable) -> Iterator[tuple[Path, TritonServer]]:
    """Its own repository (v1) and server with explicit model control: these tests change versions."""
    folder = tmp_path_factory.mktemp("versions")
    published = publish_model_repository(*export_writer(folder / "v1", catalogue.product_ids, catalogue.embeddings,
                                                       catalogue.is_new), str(folder / "repo"), serving_config)
    with TritonServer(published.path, serving_config, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield Path(published.path), server


def test_publishing_v2_switches_a_running_server_with_zero_failures_then_rollback(
        versioned: tuple[Path, TritonServer], catalogue: Catalogue, serving_config: ServingConfig,
        tmp_path: Path, export_writer: Callable) -> None:
    repository, server = versioned
    v1 = expected_ids(catalogue.product_ids, catalogue.embeddings, catalogue.aggregation["half_life_events"])
    flipped = catalogue.embeddings[np.random.default_rng(9).permutation(len(catalogue.embeddings))]  # v2: shuffled
    v2 = expected_ids(catalogue.product_ids, flipped, catalogue.aggregation["half_life_events"])
    assert v1 != v2
    export = export_writer(tmp_path / "v2", catalogue.product_ids, flipped, catalogue.is_new)

    publishing = Stream(server.grpc_url, serving_config)
    tail = publishing.around(lambda: publish_model_repository(*export, str(repository), serving_config,
                                                              server_url=server.grpc_url))
    assert publishing.failures == []
    assert all(answer in (v1, v2) for answer in publishing.answers)  # never a mix of versions
    assert tail == [v2] * STREAM_CLIENTS
    with FashionrecClient(server.http_url, "http", serving_config) as client:
        assert {client.served_version(name) for name in versions.ensembles(serving_config)} == {2}

    rolling_back = Stream(server.grpc_url, serving_config)
    command = [sys.executable, "-m", "fashionrec.app.cli", "model", "rollback", "--model-repository", str(repository),
               "--url", server.grpc_url]
    result: list[subprocess.CompletedProcess[str]] = []
    tail = rolling_back.around(lambda: result.append(subprocess.run(command, capture_output=True, text=True)))
    assert result[0].returncode == 0, result[0].stderr
    assert "Serving version 1" in result[0].stdout
    assert rolling_back.failures == []
    assert all(answer in (v1, v2) for answer in rolling_back.answers)
    assert tail == [v1] * STREAM_CLIENTS
    manifest = json.loads((repository / MANIFEST_FILE).read_text())
    assert (manifest["latest_version"], manifest["serving_version"]) == (2, 1)


def test_rollback_without_an_earlier_version_is_refused(tmp_path: Path, catalogue: Catalogue,
                                                        serving_config: ServingConfig, export_writer: Callable) -> None:
    export = export_writer(tmp_path / "v1", catalogue.product_ids, catalogue.embeddings, catalogue.is_new)
    repository = publish_model_repository(*export, str(tmp_path / "repo"), serving_config).path
    with pytest.raises(versions.VersionError, match="no version before 1"):
        versions.rollback(repository, serving_config)
    with pytest.raises(versions.VersionError, match="version 7 is not published"):
        versions.rollback(repository, serving_config, to_version=7)


def _pins(repository: Path) -> dict[str, str]:
    return {path.parent.name: path.read_text() for path in repository.glob("*/config.pbtxt")}


def _ready(server: TritonServer, within_s: float = 60.0) -> bool:
    """Whether Triton reports ready within ``within_s`` (its readiness is false while a replaced python
    model's stubs are still unloading, a few seconds after a switch)."""
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(server.http_url)
    deadline = time.monotonic() + within_s
    try:
        while not client.is_server_ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True
    finally:
        client.close()


def _model_ready(server: TritonServer, name: str, version: str) -> bool:
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(server.http_url)
    try:
        return bool(client.is_model_ready(name, version))
    finally:
        client.close()


def _switch_under_load(url: str, serving: ServingConfig, switch: Callable[[], object],
                       refusal: type[Exception], settle_s: float = 0.0) -> tuple[list[Exception], Stream, list]:
    """Run ``switch`` while a request stream flows (then ``settle_s`` more): the ``refusal`` errors it
    raised, the stream, and the stream's last answers."""
    raised: list[Exception] = []

    def attempt() -> None:
        try:
            switch()
        except refusal as error:
            raised.append(error)
        time.sleep(settle_s)

    stream = Stream(url, serving)
    tail = stream.around(attempt)
    return raised, stream, tail


def _serve_v1_with_v2_published(repository: Path, serving_config: ServingConfig, url: str) -> None:
    """The drills' starting point: versions 1 and 2 published (by the test above), version 1 served."""
    versions.activate(str(repository), 1, serving_config, url)
    assert json.loads((repository / MANIFEST_FILE).read_text())["serving_version"] == 1


def test_drill_a_corrupt_version_is_refused_under_load_and_nothing_switches(
        versioned: tuple[Path, TritonServer], catalogue: Catalogue, serving_config: ServingConfig) -> None:
    repository, server = versioned
    _serve_v1_with_v2_published(repository, serving_config, server.grpc_url)
    v1 = expected_ids(catalogue.product_ids, catalogue.embeddings, catalogue.aggregation["half_life_events"])
    table = repository / serving_config.ranking_model_name / "2" / "product_embeddings.npy"
    pristine, pins = table.read_bytes(), _pins(repository)
    table.write_bytes(pristine[: len(pristine) // 2])  # a truncated upload
    try:
        refused, drill, tail = _switch_under_load(
            server.grpc_url, serving_config, lambda: versions.activate(str(repository), 2, serving_config,
                                                                       server.grpc_url), InvalidVersion)
    finally:
        table.write_bytes(pristine)
    assert len(refused) == 1 and "rank_products: " in str(refused[0]) and "unreadable" in str(refused[0])
    assert drill.failures == [] and all(answer == v1 for answer in drill.answers) and tail == [v1] * STREAM_CLIENTS
    assert _pins(repository) == pins and _ready(server)


def test_drill_a_version_triton_cannot_load_is_reverted_and_readiness_recovers(
        versioned: tuple[Path, TritonServer], catalogue: Catalogue, serving_config: ServingConfig) -> None:
    repository, server = versioned
    _serve_v1_with_v2_published(repository, serving_config, server.grpc_url)
    v1 = expected_ids(catalogue.product_ids, catalogue.embeddings, catalogue.aggregation["half_life_events"])
    code = repository / serving_config.ranking_model_name / "2" / "model.py"
    pristine = code.read_text()
    code.write_text(pristine + '\nraise RuntimeError("drill: this version cannot load")\n')  # passes the file checks
    try:
        failed, drill, tail = _switch_under_load(
            server.grpc_url, serving_config, lambda: versions.activate(str(repository), 2, serving_config,
                                                                       server.grpc_url), versions.VersionError)
    finally:
        code.write_text(pristine)
    assert len(failed) == 1
    assert "version 2 failed to load, so serving stays on version 1" in str(failed[0])
    assert "drill: this version cannot load" in str(failed[0])
    assert drill.failures == [] and all(answer == v1 for answer in drill.answers) and tail == [v1] * STREAM_CLIENTS
    assert json.loads((repository / MANIFEST_FILE).read_text())["serving_version"] == 1
    assert all(text.count("versions:") == 1 and "versions: 1\n" in text for text in _pins(repository).values())
    # Every touchpoint is ready at version 1. (Triton's server-wide readiness stays false after a failed
    # load: it keeps the failed version's state until the next successful load of that model.)
    assert all(_model_ready(server, name, "1") for name in versions.ensembles(serving_config))


def test_drill_poll_mode_switches_to_a_good_version_and_never_sees_a_corrupt_one(
        tmp_path: Path, catalogue: Catalogue, serving_config: ServingConfig, export_writer: Callable) -> None:
    """The Kubernetes setup: Triton polls the repository. A good version published under load is picked
    up with 0 failed requests; a corrupt one is refused before any pin names it, so the polling server
    never tries to load it and keeps serving, ready."""
    polling = dataclasses.replace(serving_config, repository_poll_secs=1)
    half_life = catalogue.aggregation["half_life_events"]
    v1 = expected_ids(catalogue.product_ids, catalogue.embeddings, half_life)
    flipped = catalogue.embeddings[np.random.default_rng(9).permutation(len(catalogue.embeddings))]
    v2 = expected_ids(catalogue.product_ids, flipped, half_life)
    repository = publish_model_repository(*export_writer(tmp_path / "v1", catalogue.product_ids, catalogue.embeddings,
                                                         catalogue.is_new), str(tmp_path / "repo"), polling).path
    second = export_writer(tmp_path / "v2", catalogue.product_ids, flipped, catalogue.is_new)
    with TritonServer(repository, polling, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="poll") as server:
        publishing = Stream(server.grpc_url, polling)
        tail = publishing.around(lambda: (publish_model_repository(*second, repository, polling),
                                          _wait_for(server, polling, 2)))
        assert publishing.failures == [] and all(answer in (v1, v2) for answer in publishing.answers)
        assert tail == [v2] * STREAM_CLIENTS

        publish_model_repository(*second, repository, polling)  # version 3, served at once ...
        _wait_for(server, polling, 3)
        versions.activate(repository, 2, polling)  # ... and back to 2, so 3 can be switched to again
        _wait_for(server, polling, 2)
        table = Path(repository) / polling.ranking_model_name / "3" / "product_embeddings.npy"
        table.write_bytes(table.read_bytes()[:100])  # version 3 is corrupted in the bucket
        refused, corrupt, tail = _switch_under_load(  # streaming on through polls that would have picked it up
            server.grpc_url, polling, lambda: versions.activate(repository, 3, polling), InvalidVersion,
            settle_s=3 * polling.repository_poll_secs)
        assert len(refused) == 1 and "unreadable" in str(refused[0])
        assert corrupt.failures == [] and all(answer == v2 for answer in corrupt.answers)
        assert tail == [v2] * STREAM_CLIENTS
        assert _ready(server)


def _wait_for(server: TritonServer, serving: ServingConfig, version: int, within_s: float = 60.0) -> None:
    """Until every ensemble of a polling server answers with ``version``."""
    deadline = time.monotonic() + within_s
    with FashionrecClient(server.grpc_url, "grpc", serving) as client:
        while {client.served_version(name) for name in versions.ensembles(serving)} != {version}:
            assert time.monotonic() < deadline, f"the server did not pick up version {version}"
            time.sleep(0.2)


def _steps(repository: Path, ensemble: str) -> list[str]:
    """The model each step of an ensemble's pinned config runs, in order."""
    return re.findall(r'model_name: "(\w+)"', (repository / ensemble / "config.pbtxt").read_text())


def test_a_repository_of_the_two_step_layout_upgrades_and_rolls_back_under_load(
        tmp_path: Path, serving_config: ServingConfig, export_writer: Callable) -> None:
    """A repository an older release published (``data/README.md``: ``recommend`` ran ``customer_vector``
    then a ``rank_products`` that required CUSTOMER_VECTOR) gets the one-step layout as version 2 while
    clients stream requests, then rolls back to its own two steps: every answer is one version's, and an
    experiment refuses to serve the two layouts side by side (one config per Triton model)."""
    repository = tmp_path / "repo"
    with tarfile.open(TWO_STEP_REPOSITORY) as archive:
        archive.extractall(repository, filter="data")
    ranking = repository / serving_config.ranking_model_name / "1"
    product_ids = (ranking / "product_ids.txt").read_text().split()
    table = np.load(ranking / "product_embeddings.npy")
    half_life = json.loads((repository / "customer_vector" / "1" / "aggregation.json").read_text())["half_life_events"]
    flipped = table[np.random.default_rng(9).permutation(len(table))]
    v1, v2 = expected_ids(product_ids, table, half_life), expected_ids(product_ids, flipped, half_life)
    assert v1 != v2 and _steps(repository, "recommend") == ["customer_vector", "rank_products"]
    assert not (ranking / "aggregation.json").exists()  # that release's ranking step pooled nothing
    export = export_writer(tmp_path / "v2", product_ids, flipped, np.zeros(len(product_ids), dtype=bool))
    with TritonServer(str(repository), serving_config, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        upgrading = Stream(server.grpc_url, serving_config)
        tail = upgrading.around(lambda: publish_model_repository(*export, str(repository), serving_config,
                                                                 server_url=server.grpc_url))
        assert upgrading.failures == []
        assert all(answer in (v1, v2) for answer in upgrading.answers) and tail == [v2] * STREAM_CLIENTS
        assert _steps(repository, "recommend") == ["rank_products"]

        rolling_back = Stream(server.grpc_url, serving_config)
        tail = rolling_back.around(lambda: versions.rollback(str(repository), serving_config, url=server.grpc_url))
        assert rolling_back.failures == []
        assert all(answer in (v1, v2) for answer in rolling_back.answers) and tail == [v1] * STREAM_CLIENTS
        assert _steps(repository, "recommend") == ["customer_vector", "rank_products"]
        both = Experiment.from_dict({"name": "layouts", "salt": "s", "arms": [
            {"name": "two-step", "version": 1, "share": 0.5}, {"name": "one-step", "version": 2, "share": 0.5}]})
        pins = _pins(repository)
        with pytest.raises(versions.VersionError, match="versions 1 and 2 cannot be served side by side: their "
                                                        "rank_products configs differ"):
            versions.start_experiment(str(repository), both, serving_config, server.grpc_url)
        assert _pins(repository) == pins and not (repository / EXPERIMENT_FILE).exists() and _ready(server)
