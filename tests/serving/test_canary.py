"""The readiness canary (``fashionrec serve-canary``, :mod:`fashionrec.serving.canary`) against REAL
tritonservers: 200 while every touchpoint answers, 503 naming the touchpoints that do not (a stopped server,
an unloaded ensemble, products it cannot read), 200 again once they answer; the CLI serving it."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from fashionrec import storage
from fashionrec.app.cli import main
from fashionrec.config import ServingConfig
from fashionrec.repository import versions
from fashionrec.repository.publish import PublishedModel, publish_model_repository
from fashionrec.serving.canary import OK, Canary, CanaryReport, first_product_ids, serving_canary
from fashionrec.serving.connection import admin_headers, connect_raw
from fashionrec.serving.server import TritonServer, free_port

HOST = "127.0.0.1"
HTTP_TIMEOUT_S = 10.0
CLI_START_TIMEOUT_S = 60.0  # the CLI imports the whole package before it listens


def _get(url: str) -> tuple[int, dict]:
    """Status and JSON body of a GET (a 503 is an answer here, not an error)."""
    try:
        with urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _touchpoints(serving: ServingConfig) -> list[str]:
    return [serving.model_name, serving.rerank_model_name, serving.similar_model_name]


def _uncached(serving: ServingConfig) -> ServingConfig:
    """Every probe asks Triton again (the cache is tested on its own)."""
    return dataclasses.replace(serving, canary_cache_s=0.0)


def test_ready_with_every_check_ok_and_the_served_version(published: PublishedModel, triton: TritonServer,
                                                          serving_config: ServingConfig) -> None:
    canary = Canary(published.path, triton.grpc_url, _uncached(serving_config))
    with serving_canary(canary, HOST, 0) as server:
        assert _get(f"{server.url}/ready") == (200, {
            "ready": True, "version": published.version,
            "checks": {name: OK for name in _touchpoints(serving_config)}})
        assert _get(f"{server.url}/live") == (200, {"live": True})
        status, body = _get(f"{server.url}/nothing")
        assert status == 404 and "/ready" in body["error"]
    canary.close()


def test_the_canary_asks_about_the_first_products_of_the_served_version(published: PublishedModel,
                                                                        serving_config: ServingConfig,
                                                                        catalogue) -> None:
    assert first_product_ids(published.path, serving_config, published.version) == tuple(catalogue.product_ids[:2])


def test_not_ready_when_triton_is_down_and_ready_again_when_it_is_back(published: PublishedModel,
                                                                      serving_config: ServingConfig) -> None:
    """A server of its own, stopped and started again on the same ports (a restart, as a pod sees it)."""
    serving = _uncached(serving_config)
    touchpoints = _touchpoints(serving)
    with TritonServer(published.path, serving, http_port=0, grpc_port=0, metrics_port=0) as server:
        ports = server.ports
        canary = Canary(published.path, server.grpc_url, serving)
        with serving_canary(canary, HOST, 0) as canary_server:
            assert _get(f"{canary_server.url}/ready")[0] == 200
            server.stop()
            started = time.monotonic()
            status, body = _get(f"{canary_server.url}/ready")
            assert time.monotonic() - started < 2 * serving.canary_timeout_s + 1.0  # well within a probe's timeout
            assert status == 503 and body["ready"] is False and body["version"] is None
            assert set(body["checks"]) == set(touchpoints)
            assert all(reason != OK and "UNAVAILABLE" in reason for reason in body["checks"].values()), body
            with TritonServer(published.path, serving, http_port=ports[0], grpc_port=ports[1], metrics_port=ports[2]):
                assert _get(f"{canary_server.url}/ready") == (200, {
                    "ready": True, "version": published.version, "checks": {name: OK for name in touchpoints}})
        canary.close()


def test_not_ready_against_a_closed_port(published: PublishedModel, serving_config: ServingConfig) -> None:
    canary = Canary(published.path, f"{HOST}:{free_port(HOST)}", _uncached(serving_config))
    report = canary.report()
    canary.close()
    assert not report.ready and report.version is None
    assert all(reason != OK for reason in report.checks.values()) and len(report.checks) == 3


def test_an_unloaded_touchpoint_is_not_ready_and_loading_it_back_is(published: PublishedModel,
                                                                    serving_config: ServingConfig) -> None:
    """Explicit model control, on a server of its own so that the shared one keeps every touchpoint."""
    serving = _uncached(serving_config)
    with TritonServer(published.path, serving, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        canary = Canary(published.path, server.grpc_url, serving)
        headers = admin_headers(serving, "grpc")  # the repository API may be restricted to a key
        with serving_canary(canary, HOST, 0) as canary_server, connect_raw(server.grpc_url) as client:
            assert _get(f"{canary_server.url}/ready")[0] == 200
            client.unload_model(serving.similar_model_name, headers=headers)
            status, body = _get(f"{canary_server.url}/ready")
            assert status == 503 and body["ready"] is False, body
            failed = {name for name, reason in body["checks"].items() if reason != OK}
            assert failed == {serving.similar_model_name}, body
            assert "no available versions" in body["checks"][serving.similar_model_name]
            assert body["version"] == published.version  # the others still answer with it
            client.load_model(serving.similar_model_name, headers=headers)
            assert _get(f"{canary_server.url}/ready")[0] == 200
        canary.close()


def test_the_canary_follows_the_version_triton_serves(published: PublishedModel, serving_config: ServingConfig,
                                                     catalogue, export_writer: Callable, tmp_path: Path) -> None:
    """A publish loaded into the server (new product ids) and a rollback: each round asks about the products of
    the version Triton serves then, read once per version."""
    serving = _uncached(serving_config)
    repository = tmp_path / "repository"
    shutil.copytree(published.path, repository)
    renamed = [pid.replace("P", "Q") for pid in catalogue.product_ids]  # no product of version 1
    ok = {name: OK for name in _touchpoints(serving)}
    with TritonServer(repository, serving, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        canary = Canary(str(repository), server.grpc_url, serving)
        assert canary.report() == CanaryReport(True, published.version, ok)
        export = export_writer(tmp_path / "v2", renamed, catalogue.embeddings, catalogue.is_new)
        second = publish_model_repository(*export, str(repository), serving, server_url=server.grpc_url)
        assert canary.report() == CanaryReport(True, second.version, ok)
        assert first_product_ids(str(repository), serving, second.version) == tuple(renamed[:2])
        versions.rollback(str(repository), serving, published.version, server.grpc_url)
        assert canary.report() == CanaryReport(True, published.version, ok)
        canary.close()


def test_the_canary_reads_its_products_from_a_gs_repository(published: PublishedModel, triton: TritonServer,
                                                            serving_config: ServingConfig, gcs_emulator: str) -> None:
    """As in a pod (MODEL_REPOSITORY=gs://...): the served version's product ids read from the bucket (the GCS
    emulator); a bucket without them fails every check, naming the object."""
    repository = f"{gcs_emulator}/canary/model_repository"
    folder = Path(published.path) / serving_config.ranking_model_name / str(published.version)
    storage.copy_tree(str(folder), storage.join(repository, serving_config.ranking_model_name, str(published.version)))
    serving = _uncached(serving_config)
    canary = Canary(repository, triton.grpc_url, serving)
    assert canary.report() == CanaryReport(True, published.version, {name: OK for name in _touchpoints(serving)})
    canary.close()
    canary = Canary(f"{gcs_emulator}/canary/elsewhere", triton.grpc_url, serving)
    report = canary.report()
    canary.close()
    assert not report.ready and all("no such object" in reason for reason in report.checks.values()), report


def test_products_the_canary_cannot_read_fail_every_check(triton: TritonServer, serving_config: ServingConfig,
                                                          tmp_path: Path) -> None:
    """A canary pointed at another repository than the one Triton serves says so, rather than guessing ids."""
    canary = Canary(str(tmp_path), triton.grpc_url, _uncached(serving_config))
    report = canary.report()
    canary.close()
    assert not report.ready
    assert all("product_ids.txt" in reason for reason in report.checks.values()), report.checks


def test_results_are_cached_for_canary_cache_s(published: PublishedModel, serving_config: ServingConfig) -> None:
    """Probes within the cache time get the last round's answer; the next one after it asks Triton again."""
    now = [0.0]
    serving = dataclasses.replace(serving_config, canary_cache_s=5.0)
    with TritonServer(published.path, serving, http_port=0, grpc_port=0, metrics_port=0) as server:
        canary = Canary(published.path, server.grpc_url, serving, clock=lambda: now[0])
        first = canary.report()
        assert first.ready
        server.stop()
        now[0] += serving.canary_cache_s - 0.1
        assert canary.report() is first
        now[0] += 0.1
        assert not canary.report().ready
        canary.close()


def test_changes_of_readiness_are_logged_once(published: PublishedModel, triton: TritonServer,
                                              serving_config: ServingConfig) -> None:
    lines: list[str] = []
    canary = Canary(published.path, triton.grpc_url, _uncached(serving_config), log=lines.append)
    canary.report()
    canary.report()
    canary.close()
    assert len(lines) == 1 and "ready (version 1)" in lines[0] and triton.grpc_url in lines[0]


# ------------------------------------------------------------------------------------------------ CLI


def test_the_cli_parses_its_options() -> None:
    result = CliRunner().invoke(main, ["serve-canary", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--model-repository", "--triton-url", "--port", "--host", "--set"):
        assert option in result.output
    command = main.get_command(None, "serve-canary")
    context = command.make_context("serve-canary", ["--model-repository", "gs://bucket/repo", "--triton-url",
                                                    "127.0.0.1:8001", "--port", "8003", "--host", "0.0.0.0"])
    assert context.params == {"model_repository": "gs://bucket/repo", "triton_url": "127.0.0.1:8001", "port": 8003,
                              "host": "0.0.0.0", "overrides": ()}


@pytest.mark.parametrize("arguments, message", [
    (["--model-repository", "repo"], "--triton-url"),
    (["--model-repository", "repo", "--triton-url", "x:1", "--port", "70000"], "--port"),
    (["--model-repository", "repo", "--triton-url", "x:1", "--set", "serving.canary_cache_s=-1"], "canary_cache_s"),
])
def test_the_cli_refuses_bad_options(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["serve-canary", *arguments])
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_cli_says_when_its_port_is_taken() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve-canary", "--model-repository", "repo", "--triton-url",
                                           f"{HOST}:1", "--host", HOST, "--port", str(port)])
    assert result.exit_code == 1 and f"cannot listen on {HOST}:{port}" in result.output, result.output


def test_the_cli_serves_readiness_until_sigterm(published: PublishedModel, triton: TritonServer) -> None:
    """``fashionrec serve-canary`` as the pod runs it: listening, ready against the real server, gone on SIGTERM."""
    port = free_port(HOST)
    fashionrec = Path(sys.executable).parent / "fashionrec"
    process = subprocess.Popen([str(fashionrec), "serve-canary", "--model-repository", published.path,
                                "--triton-url", triton.grpc_url, "--port", str(port), "--host", HOST,
                                "--set", "serving.canary_cache_s=0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + CLI_START_TIMEOUT_S
        while True:
            try:
                answer = _get(f"http://{HOST}:{port}/ready")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None and time.monotonic() < deadline, process.communicate()
                time.sleep(0.2)
        assert answer[0] == 200 and answer[1]["ready"] is True, answer
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=HTTP_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr
    assert "Stopped the canary." in stderr and f"{HOST}:{port}/ready" in stderr
    assert "ready (version 1)" in stderr  # the change of readiness, logged
