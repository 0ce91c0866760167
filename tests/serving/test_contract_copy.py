"""Each version runs the contract copied into its own folder, whatever the server's working directory
(a fashionrec checkout included): an old version keeps its own code after the package changes."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest

from fashionrec.app.client import FashionrecClient, History, RequestRejected
from fashionrec.config import ServingConfig
from fashionrec.repository.publish import PublishedModel
from fashionrec.serving.server import TritonServer

MARKER = "fashionrec_this_versions_own_contract_total"


def test_a_version_runs_its_own_copy_of_the_contract(published: PublishedModel, tmp_path: Path,
                                                      pytestconfig: pytest.Config,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(published.path, repository)
    serving = ServingConfig()
    for copy in repository.glob(f"{serving.ranking_model_name}/*/fashionrec/contract/validation.py"):
        copy.write_text(copy.read_text() + f'\nREFUSED_METRIC = "{MARKER}"\n')  # only this copy counts so
    monkeypatch.chdir(pytestconfig.rootpath)  # started from the checkout, whose contract must not be imported
    with TritonServer(str(repository), serving, http_port=0, grpc_port=0, metrics_port=0) as server:
        with FashionrecClient(server.grpc_url, "grpc", serving) as client:
            with pytest.raises(RequestRejected):
                client.recommend(History(["P000001"]), 5, candidate_set="no-such-set")
        metrics = urllib.request.urlopen(server.metrics_url, timeout=10).read().decode("utf-8")
    assert f'{MARKER}{{model="{serving.ranking_model_name}"' in metrics
