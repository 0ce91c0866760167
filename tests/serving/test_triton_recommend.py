"""The recommend ensemble on a REAL tritonserver, over HTTP and gRPC, against a plain-numpy reference."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np
import pytest

from fashionrec.config import ServingConfig
from fashionrec.repository.publish import PublishedModel
from fashionrec.app.serving_commands import print_recommendations
from fashionrec.app.client import RecommendClient, RecommendError
from fashionrec.serving.environment import (
    ensure_serving_environment,
    pinned_version,
    requirements_text,
    serving_venv_path,
)
from fashionrec.serving.server import TritonServer, TritonStartError

if TYPE_CHECKING:
    from conftest import Catalogue


def reference(catalogue: Catalogue, history: list[str], weights: list[float], k: int) -> tuple[list[str], np.ndarray]:
    """What the ensemble must answer, recomputed in float64 without fashionrec code."""
    index = {pid: row for row, pid in enumerate(catalogue.product_ids)}
    # the published recency pooling halves a weight per half_life_events newer events (no timestamps here)
    # and pools only the last `window` events
    newer = np.arange(len(history))[::-1]
    decay = 0.5 ** (newer / catalogue.aggregation["half_life_events"]) * (newer < catalogue.aggregation["window"])
    known = [(index[pid], w * d) for pid, w, d in zip(history, weights, decay, strict=True) if pid in index]
    total = sum(w for _, w in known)
    vector = np.zeros(catalogue.embeddings.shape[1])
    if total > 0:
        vector = sum(w * catalogue.embeddings[row].astype(np.float64) for row, w in known) / total
    dots = catalogue.embeddings.astype(np.float64) @ vector + catalogue.prior  # + the popularity prior
    order = sorted(range(len(dots)), key=lambda row: (-dots[row], row))[:k]
    return [catalogue.product_ids[row] for row in order], 1.0 / (1.0 + np.exp(-dots[order]))


def assert_matches(client: RecommendClient, catalogue: Catalogue, history: list[str],
                   weights: list[float] | None, k: int) -> None:
    got = client.recommend(history, weights, k=k)
    ids, scores = reference(catalogue, history, weights or [1.0] * len(history), k)
    assert [r.product_id for r in got] == ids
    np.testing.assert_allclose([r.score for r in got], scores, rtol=1e-5)


def test_recommendations_equal_the_numpy_reference(client: RecommendClient, catalogue: Catalogue) -> None:
    rng = np.random.default_rng(1)
    long_history = [catalogue.product_ids[i] for i in rng.choice(len(catalogue.product_ids), 20, replace=False)]
    assert_matches(client, catalogue, ["P000003", "P000150", "P000042"], [1.0, 3.0, 5.0], k=10)
    assert_matches(client, catalogue, long_history, rng.uniform(0.5, 5.0, 20).round(2).tolist(), k=25)
    assert_matches(client, catalogue, ["P000077"], None, k=1)


def test_a_new_product_is_recommended_when_the_history_points_at_it(client: RecommendClient,
                                                                    catalogue: Catalogue) -> None:
    assert catalogue.is_new[catalogue.product_ids.index(catalogue.new_product)]
    got = client.recommend(catalogue.pointing_history, [1.0, 2.0], k=5)
    assert got[0].product_id == catalogue.new_product
    assert_matches(client, catalogue, catalogue.pointing_history, [1.0, 2.0], k=5)


def test_unknown_ids_in_the_history_are_ignored(client: RecommendClient, catalogue: Catalogue) -> None:
    with_unknown = client.recommend(["P000005", "NOT-A-PRODUCT", "P999999"], [2.0, 7.0, 9.0], k=10)
    assert with_unknown == client.recommend(["P000005"], [2.0], k=10)
    assert_matches(client, catalogue, ["P000005", "NOT-A-PRODUCT"], [2.0, 7.0], k=10)


def test_a_history_without_known_products_ranks_by_the_popularity_prior(client: RecommendClient,
                                                                        catalogue: Catalogue) -> None:
    got = client.recommend(["UNKNOWN-1", "UNKNOWN-2"], k=3)  # zero customer vector
    top = np.argsort(-catalogue.prior, kind="stable")[:3]
    assert [r.product_id for r in got] == [catalogue.product_ids[row] for row in top]
    np.testing.assert_allclose([r.score for r in got], 1 / (1 + np.exp(-catalogue.prior[top])), rtol=1e-6)


# Each case builds (history, weights, k, expected message) from the served ServingConfig's limits.
BAD_REQUESTS = {
    "k-zero": lambda cfg: (["P000001"], None, 0, f"TOP_K must be between 1 and {cfg.max_top_k}, got 0"),
    "k-too-large": lambda cfg: (["P000001"], None, cfg.max_top_k + 1, f"got {cfg.max_top_k + 1}"),
    "lengths-differ": lambda cfg: (["P000001", "P000002"], [1.0, 2.0, 3.0], 5,
                                   "HISTORY_WEIGHTS has 3 values but HISTORY_PRODUCT_IDS has 2"),
    "history-too-long": lambda cfg: (["P000001"] * (cfg.max_history_length + 1), None, 5,
                                     f"more than max_history_length={cfg.max_history_length}"),
    "negative-weight": lambda cfg: (["P000001"], [-1.0], 5, "finite and non-negative"),
    "empty-history": lambda cfg: ([], None, 5, "HISTORY_PRODUCT_IDS is empty"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_requests_get_an_error_and_the_server_keeps_answering(
        client: RecommendClient, catalogue: Catalogue, serving_config: ServingConfig, case: str) -> None:
    history, weights, k, message = BAD_REQUESTS[case](serving_config)
    with pytest.raises(RecommendError, match=re.escape(message)):
        client.recommend(history, weights, k=k)
    assert_matches(client, catalogue, ["P000001"], None, k=5)


def _counter(metrics: str, name: str, model: str) -> float:
    """One Prometheus counter of one model from Triton's /metrics text."""
    pattern = rf'^{name}\{{[^}}]*model="{model}"[^}}]*\}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, metrics, flags=re.MULTILINE))


def _settled_metrics(triton: TritonServer, settle_s: float = 0.25, limit_s: float = 10.0) -> str:
    """Triton's /metrics text once it stops changing: Triton counts a request after its response has gone,
    so a read right after the previous test's last answer may miss that request."""
    def counters(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith("nv_inference_")]

    deadline = time.monotonic() + limit_s
    text = urllib.request.urlopen(triton.metrics_url).read().decode()
    while time.monotonic() < deadline:
        time.sleep(settle_s)
        again = urllib.request.urlopen(triton.metrics_url).read().decode()
        if counters(again) == counters(text):
            return again
        text = again
    return text


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(
        triton: TritonServer, catalogue: Catalogue, serving_config: ServingConfig) -> None:
    """Dynamic batching puts several requests (different histories and k) into one execute() call."""
    rng = np.random.default_rng(3)
    jobs = [([catalogue.product_ids[i] for i in rng.choice(len(catalogue.product_ids), 1 + n % 7)], 1 + n % 13)
            for n in range(48)]
    ranking = serving_config.ranking_model_name
    before = _settled_metrics(triton)
    with RecommendClient(triton.grpc_url, "grpc") as client, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: client.recommend(job[0], k=job[1]), jobs))
    after = _settled_metrics(triton)
    for (history, k), got in zip(jobs, answers, strict=True):
        assert [r.product_id for r in got] == reference(catalogue, history, [1.0] * len(history), k)[0]
    requests, executions = (_counter(after, name, ranking) - _counter(before, name, ranking)
                            for name in ("nv_inference_request_success", "nv_inference_exec_count"))
    assert requests == len(jobs)
    assert executions < requests


def test_print_recommendations_prints_a_table_and_reports_refusals(
        triton: TritonServer, catalogue: Catalogue, serving_config: ServingConfig,
        capsys: pytest.CaptureFixture[str]) -> None:
    got = print_recommendations(["P000009"], k=3, url=triton.http_url, protocol="http", serving=serving_config)
    lines = capsys.readouterr().out.splitlines()
    assert [r.product_id for r in got] == reference(catalogue, ["P000009"], [1.0], 3)[0]
    assert lines[0].split() == ["rank", "product_id", "score"]
    assert lines[1].split() == ["1", got[0].product_id, f"{got[0].score:.4f}"] and len(lines) == 4
    with pytest.raises(click.ClickException, match="TOP_K must be between"):
        print_recommendations(["P000009"], k=0, url=triton.grpc_url, protocol="grpc", serving=serving_config)


def _python_model(repository: Path, name: str, model_code: str | None) -> None:
    """A one-input python model; ``model_code`` None leaves model.py out."""
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 1\n'
        'input [{ name: "X" data_type: TYPE_FP32 dims: [1] }]\noutput [{ name: "Y" data_type: TYPE_FP32 dims: [1] }]\n')
    if model_code is not None:
        (repository / name / "1" / "model.py").write_text(model_code)


def test_a_model_that_fails_to_load_stops_the_start_with_its_error(tmp_path: Path,
                                                                    serving_config: ServingConfig) -> None:
    failing = ("class TritonPythonModel:\n"
               "    def initialize(self, args):\n"
               "        raise RuntimeError('catalogue is corrupt')\n")
    _python_model(tmp_path, "corrupt_model", failing)
    started = time.monotonic()
    with pytest.raises(TritonStartError, match=r"(?s)exited with status 1.*corrupt_model.*catalogue is corrupt"):
        TritonServer(tmp_path, serving_config, http_port=0, grpc_port=0, metrics_port=0).start()
    assert time.monotonic() - started < serving_config.startup_timeout_s / 2


def test_a_server_that_never_gets_ready_times_out_with_the_reason(tmp_path: Path,
                                                                  serving_config: ServingConfig) -> None:
    """Triton 2.51 hangs (never ready, never exits) when a python model has no model.py."""
    _python_model(tmp_path, "codeless_model", None)
    impatient = dataclasses.replace(serving_config, startup_timeout_s=3.0)
    with pytest.raises(TritonStartError, match=r"(?s)not ready after 3.0 s.*Python model file not found"):
        TritonServer(tmp_path, impatient, http_port=0, grpc_port=0, metrics_port=0).start()


def test_serve_command_prints_the_urls_and_stops_on_ctrl_c(published: PublishedModel, catalogue: Catalogue,
                                                           serving_config: ServingConfig) -> None:
    command = [sys.executable, "-m", "fashionrec.app.serving_commands", "--model-repository", published.path,
               "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0"]
    # Started with SIGINT ignored, as a background job is: Ctrl-C must still stop it.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = [process.stdout.readline() for _ in range(4)]
        assert lines[0].startswith("Triton is ready")
        grpc_url = lines[2].split()[-1]
        with RecommendClient(grpc_url, "grpc") as client:
            assert [r.product_id for r in client.recommend(["P000009"], k=3)] == reference(
                catalogue, ["P000009"], [1.0], 3)[0]
        process.send_signal(signal.SIGINT)
        # the command itself may wait the whole shutdown timeout for Triton before killing it
        assert process.wait(timeout=2 * serving_config.shutdown_timeout_s + 10) == 0
        assert "Stopped tritonserver." in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()


def test_the_serving_environment_is_pinned_and_reused(serving_config: ServingConfig) -> None:
    text = requirements_text()
    assert pinned_version("nvidia-pytriton", text) == serving_config.pytriton_version
    assert pinned_version("numpy", text).startswith("1.26.")
    ensure_serving_environment(pytriton_version=serving_config.pytriton_version)
    started = time.monotonic()
    assert ensure_serving_environment() == serving_venv_path()
    assert time.monotonic() - started < 0.5
    with pytest.raises(ValueError, match=re.escape("pytriton_version=9.9.9")):
        ensure_serving_environment(pytriton_version="9.9.9")


def test_the_serving_venv_location_follows_the_environment_variable(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    monkeypatch.setenv("FASHIONREC_SERVING_VENV", str(tmp_path / "venv"))
    assert serving_venv_path() == tmp_path / "venv"
    monkeypatch.delenv("FASHIONREC_SERVING_VENV")
    assert serving_venv_path() == Path(os.path.expanduser("~/.cache/fashionrec/serving-venv"))
