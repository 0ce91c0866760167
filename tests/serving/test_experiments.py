"""Experiments on a REAL tritonserver: every arm's version served at once, each through its own ensembles,
no request mixing versions; starting and stopping without a restart; a start Triton refuses is undone."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fashionrec.app.client import FashionrecClient, History
from fashionrec.config import ServingConfig
from fashionrec.repository import versions
from fashionrec.repository.check import InvalidVersion
from fashionrec.repository.experiments import EXPERIMENT_FILE, Experiment, read_experiment
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving.server import TritonServer

if TYPE_CHECKING:
    from conftest import Catalogue

HISTORY = History(["P000003", "P000150", "P000042"], weights=[1.0, 3.0, 5.0])
K = 10
AB = {"name": "shuffle-test", "salt": "t1", "arms": [{"name": "control", "version": 1, "share": 0.5},
                                                   {"name": "shuffled", "version": 2, "share": 0.5}]}


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue, serving_config: ServingConfig,
                 drill_serving_config: ServingConfig, export_writer: Callable) -> Iterator[tuple[Path, TritonServer]]:
    """v1 (the catalogue's table) and v2 (its rows shuffled) published, v2 served; explicit model control."""
    folder = tmp_path_factory.mktemp("experiments")
    repository = str(folder / "repo")
    publish_model_repository(*export_writer(folder / "v1", catalogue.product_ids, catalogue.embeddings,
                                            catalogue.is_new), repository, serving_config)
    shuffled = catalogue.embeddings[np.random.default_rng(9).permutation(len(catalogue.embeddings))]
    publish_model_repository(*export_writer(folder / "v2", catalogue.product_ids, shuffled, catalogue.is_new),
                             repository, serving_config)
    with TritonServer(repository, drill_serving_config, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield Path(repository), server


def answer(server: TritonServer, serving: ServingConfig, ensemble: str) -> tuple[list[str], int | None]:
    """``recommend`` asked of ``ensemble``: the ids and the version that answered."""
    with FashionrecClient(server.grpc_url, "grpc", dataclasses.replace(serving, model_name=ensemble)) as client:
        ranked = client.recommend(HISTORY, K)
        return [r.product_id for r in ranked], client.served_version(ensemble)


def model_ready(server: TritonServer, name: str) -> bool:
    import tritonclient.http as triton_http

    client = triton_http.InferenceServerClient(server.http_url)
    try:
        return bool(client.is_model_ready(name))
    finally:
        client.close()


def loaded_versions(repository: Path, model: str) -> list[int]:
    text = (repository / model / "config.pbtxt").read_text()
    return sorted(int(v) for v in text.split("versions:")[1:] for v in [v.split()[0]])


def test_every_arm_serves_its_own_version_beside_the_served_one_then_stops(
        two_versions: tuple[Path, TritonServer], serving_config: ServingConfig) -> None:
    repository, server = two_versions
    served_before = answer(server, serving_config, "recommend")
    assert served_before[1] == 2
    command = [sys.executable, "-m", "fashionrec.app.cli", "experiment", "start", "--model-repository",
               str(repository), "--name", "shuffle-test", "--salt", "t1", "--arm", "control=1:0.5",
               "--arm", "shuffled=2:0.5", "--url", server.grpc_url]
    started = subprocess.run(command, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    assert "Experiment shuffle-test started (control: v1 50%, shuffled: v2 50%)" in started.stdout

    assert read_experiment(str(repository)) == Experiment.from_dict({**AB, "start": read_experiment(
        str(repository)).to_dict()["start"]})
    v1, v2 = answer(server, serving_config, "recommend_v1"), answer(server, serving_config, "recommend_v2")
    assert (v1[1], v2[1]) == (1, 2) and v1[0] != v2[0]
    assert v2 == served_before  # the served version answers the same through its arm copy
    assert answer(server, serving_config, "recommend") == served_before  # everyone else: unchanged
    for model in versions.python_models(serving_config)[:3]:
        assert loaded_versions(repository, model) == [1, 2]

    stopped = subprocess.run([sys.executable, "-m", "fashionrec.app.cli", "experiment", "stop", "--model-repository",
                              str(repository), "--url", server.grpc_url, "--drain-s", "0"],
                             capture_output=True, text=True)
    assert stopped.returncode == 0, stopped.stderr
    assert not (repository / EXPERIMENT_FILE).exists()
    assert not any((repository / f"{base}_v{v}").exists() for base in versions.ensembles(serving_config)
                   for v in (1, 2))
    assert not model_ready(server, "recommend_v1")
    assert answer(server, serving_config, "recommend") == served_before
    manifest = json.loads((repository / MANIFEST_FILE).read_text())
    assert [e["name"] for e in manifest["experiments"]] == ["shuffle-test"] and manifest["experiments"][0]["stopped"]


def test_a_second_experiment_waits_for_the_first_to_stop(two_versions: tuple[Path, TritonServer],
                                                          serving_config: ServingConfig) -> None:
    repository, server = two_versions
    versions.start_experiment(str(repository), Experiment.from_dict(AB), serving_config, server.grpc_url)
    try:
        with pytest.raises(versions.ExperimentError, match="'shuffle-test' is running"):
            versions.start_experiment(str(repository), Experiment.from_dict({**AB, "name": "other"}), serving_config,
                                      server.grpc_url)
    finally:
        versions.stop_experiment(str(repository), serving_config, server.grpc_url)


def test_drill_an_arm_triton_cannot_load_is_undone_and_nothing_routes_to_it(
        two_versions: tuple[Path, TritonServer], serving_config: ServingConfig) -> None:
    repository, server = two_versions
    pins = {path.parent.name: path.read_text() for path in repository.glob("*/config.pbtxt")}
    code = repository / serving_config.ranking_model_name / "1" / "model.py"
    pristine = code.read_text()
    code.write_text(pristine + '\nraise RuntimeError("drill: this version cannot load")\n')  # passes the file checks
    try:
        with pytest.raises(versions.VersionError, match="could not start: .*drill: this version cannot load"):
            versions.start_experiment(str(repository), Experiment.from_dict(AB), serving_config, server.grpc_url)
    finally:
        code.write_text(pristine)
    assert read_experiment(str(repository)) is None
    after = {path.parent.name: path.read_text() for path in repository.glob("*/config.pbtxt")}
    assert set(after) == set(pins)  # no arm ensemble is left behind
    for model in versions.python_models(serving_config)[:3]:  # the version that failed is no longer kept loaded
        assert loaded_versions(repository, model) == [2]
    assert answer(server, serving_config, "recommend")[1] == 2


def test_drill_a_corrupt_arm_version_is_refused_before_anything_is_written(
        two_versions: tuple[Path, TritonServer], serving_config: ServingConfig) -> None:
    repository, server = two_versions
    table = repository / serving_config.ranking_model_name / "1" / "product_embeddings.npy"
    pristine, pins = table.read_bytes(), {p.parent.name: p.read_text() for p in repository.glob("*/config.pbtxt")}
    table.write_bytes(pristine[: len(pristine) // 2])  # a truncated upload
    try:
        with pytest.raises(InvalidVersion, match="unreadable"):
            versions.start_experiment(str(repository), Experiment.from_dict(AB), serving_config, server.grpc_url)
    finally:
        table.write_bytes(pristine)
    assert read_experiment(str(repository)) is None
    assert {p.parent.name: p.read_text() for p in repository.glob("*/config.pbtxt")} == pins


def test_an_unpublished_arm_is_refused(two_versions: tuple[Path, TritonServer], serving_config: ServingConfig) -> None:
    repository, _ = two_versions
    arms = [AB["arms"][0], {**AB["arms"][1], "version": 9}]
    with pytest.raises(versions.VersionError, match=r"arm version 9 is not published .*\(published: \[1, 2\]\)"):
        versions.start_experiment(str(repository), Experiment.from_dict({**AB, "arms": arms}), serving_config)
