"""The shop routes each visitor to their experiment arm's version, on a REAL Triton and a real service: the
arm's ensembles answer, impressions and events carry the experiment and arm, and stopping the experiment
sends everyone back to the served version without a restart."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashionrec.config import ServingConfig
from fashionrec.repository import versions
from fashionrec.repository.experiments import Experiment
from fashionrec.repository.publish import publish_model_repository
from fashionrec.repository.served import served_version
from fashionrec.serving.server import TritonServer

REFRESH_S = 0.5
AB = {"name": "shuffle-ab", "salt": "r1", "arms": [{"name": "control", "version": 1, "share": 0.5},
                                                 {"name": "shuffled", "version": 2, "share": 0.5}]}


@pytest.fixture(scope="module")
def ab_files(tmp_path_factory: pytest.TempPathFactory, shop_files):
    """A copy of the shop's repository with version 2 published: version 1's table, rows shuffled."""
    folder = tmp_path_factory.mktemp("ab")
    repository = folder / "model_repository"
    shutil.copytree(shop_files.model_repository, repository)
    v1 = served_version(str(repository), ServingConfig())
    shuffled = v1.embeddings[np.random.default_rng(3).permutation(len(v1.embeddings))]
    columns = {"product_id": v1.product_ids, "is_new": np.zeros(len(v1.product_ids), bool),
               "embedding": pa.array([row.tolist() for row in shuffled], type=pa.list_(pa.float32())),
               "popularity_prior": pa.array(v1.prior, pa.float32())}
    pq.write_table(pa.table(columns), folder / "embeddings.parquet")
    v1.aggregation.write(str(folder / "aggregation.json"))
    (folder / "blessing.json").write_text('{"blessed": true, "reasons": []}')
    publish_model_repository(str(folder / "embeddings.parquet"), str(folder / "blessing.json"), str(repository),
                             ServingConfig(), candidate_sets=v1.candidate_sets)
    return dataclasses.replace(shop_files, model_repository=str(repository))


@pytest.fixture(scope="module")
def ab_triton(ab_files) -> Iterator[TritonServer]:
    with TritonServer(ab_files.model_repository, ServingConfig(), http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield server


def _homepage(url: str, customer: str) -> dict:
    response = httpx.get(f"{url}/v1/homepage", params={"customer_id": customer}, timeout=30.0)
    assert response.status_code == 200, response.text
    return response.json()


def _wait_for_version(url: str, customer: str, version: int) -> dict:
    deadline = time.monotonic() + 10 * REFRESH_S + 5
    while time.monotonic() < deadline:
        page = _homepage(url, customer)
        if page["model_version"] == version:
            return page
        time.sleep(REFRESH_S / 2)
    raise AssertionError(f"{customer} never got version {version}")


def test_visitors_get_their_arms_version_and_every_record_carries_the_arm(
        tmp_path: Path, ab_files, ab_triton: TritonServer, start_shop) -> None:
    repository = ab_files.model_repository
    versions.activate(repository, 1, ServingConfig(), ab_triton.grpc_url)  # v1 served; v2 only in the experiment
    shop = start_shop(ab_triton.grpc_url, tmp_path, f"experiment.refresh_s={REFRESH_S}", files=ab_files)
    try:
        experiment = Experiment.from_dict(AB)
        customers = sorted(ab_files.events["customer_id"].unique())[:40]
        assert {_homepage(shop.url, c)["model_version"] for c in customers[:3]} == {1}  # before: the served version
        versions.start_experiment(repository, experiment, ServingConfig(), ab_triton.grpc_url)
        by_arm = {c: experiment.arm_for(f"{c}") for c in customers}
        assert {arm.name for arm in by_arm.values()} == {"control", "shuffled"}
        shuffled = next(c for c, arm in by_arm.items() if arm.name == "shuffled")
        _wait_for_version(shop.url, shuffled, 2)  # the shop picked the experiment up without a restart
        pages = {c: _homepage(shop.url, c) for c in customers}
        for customer, page in pages.items():
            assert page["model_version"] == by_arm[customer].version, customer
            assert all(not c["fallback"] for c in page["carousels"])
        clicked = next(p for p in pages[shuffled]["carousels"][0]["products"])["product_id"]
        posted = httpx.post(f"{shop.url}/v1/events", timeout=30.0, json={"events": [
            {"customer_id": shuffled, "product_id": clicked, "event_type": "click",
             "request_id": pages[shuffled]["request_id"]}]})
        assert posted.json()["accepted"] == 1
        versions.stop_experiment(repository, ServingConfig(), ab_triton.grpc_url, drain_s=3 * REFRESH_S)
        assert _homepage(shop.url, shuffled)["model_version"] == 1  # everyone is back on the served version
    finally:
        shop.stop()  # SIGTERM: impressions flushed, the journal rolled into the log
    impressions = pd.read_parquet(tmp_path / "log" / "impressions")
    tagged = impressions[impressions["request_id"].isin([p["request_id"] for p in pages.values()])]
    assert len(tagged) >= len(customers)
    for row in tagged.itertuples():
        assert (row.experiment, row.arm, row.model_version) == (
            "shuffle-ab", by_arm[row.customer_id].name, by_arm[row.customer_id].version)
    assert impressions[impressions["experiment"].isna()]["model_version"].eq(1).all()
    events = pd.read_parquet(tmp_path / "log" / "events")
    event = events[events["customer_id"] == shuffled].iloc[-1]
    assert (event["product_id"], event["request_id"], event["experiment"], event["arm"]) == (
        clicked, pages[shuffled]["request_id"], "shuffle-ab", "shuffled")
    _check_report(tmp_path, repository, by_arm, pages[shuffled]["request_id"])


def _check_report(folder: Path, repository: str, by_arm: dict, clicked_request: str) -> None:
    """`fashionrec experiment report` over the service's real log: the stopped experiment found by name, each
    arm's visitors as assigned, the click attributed to the page that showed the product."""
    command = [sys.executable, "-m", "fashionrec.app.cli", "experiment", "report", "--log-dir", str(folder / "log"),
               "--model-repository", repository, "--name", "shuffle-ab", "--output", str(folder / "report")]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "verdict (conversion):" in done.stdout
    report = json.loads((folder / "report" / "report.json").read_text())
    arms = {arm["name"]: arm for arm in report["arms"]}
    for name in ("control", "shuffled"):
        assert arms[name]["visitors"] == sum(arm.name == name for arm in by_arm.values())
    assert arms["shuffled"]["attributed"]["click"] == 1 and arms["control"]["attributed"]["click"] == 0
    assert "shuffle-ab" in (folder / "report" / "report.html").read_text()
