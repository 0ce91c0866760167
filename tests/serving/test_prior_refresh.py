"""Refreshing the served popularity prior from recent events (``fashionrec catalogue refresh-prior``) on
a REAL tritonserver: the next version serves the new prior with zero failed requests, then rolls back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pytest

from fashionrec.app.client import FashionrecClient, RecommendError
from fashionrec.config import ExportConfig, ServingConfig
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import publish_model_repository
from fashionrec.repository.catalogue import refresh_prior
from fashionrec.serving.server import TritonServer

if TYPE_CHECKING:
    from conftest import Catalogue

NOW = pd.Timestamp("2026-12-01 12:00", tz="UTC")
EXPORT = ExportConfig(popularity_prior_weight=1.0, popularity_half_life_days=1.0)


def recent_events() -> pd.DataFrame:
    """P000042 bought 3x today, P000007 clicked 6x two days ago, plus junk: a product outside the
    catalogue and an unknown event type (both dropped and counted, not fatal)."""
    rows = [("C1", "P000042", "purchase", NOW)] * 3 + [("C2", "P000007", "click", NOW - pd.Timedelta(days=2))] * 6
    rows += [("C3", "GONE", "click", NOW), ("C4", "P000001", "teleport", NOW)]
    frame = pd.DataFrame(rows, columns=["customer_id", "product_id", "event_type", "timestamp"])
    frame["customer_id"] += pd.Series(range(len(frame))).astype(str)  # distinct rows: not duplicates
    frame["timestamp"] = frame["timestamp"].map(pd.Timestamp.isoformat)
    return frame


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue, serving_config: ServingConfig,
           export_writer: Callable) -> Iterator[tuple[Path, TritonServer]]:
    """Version 1 without a prior (nor a content tower), served with explicit model control."""
    folder = tmp_path_factory.mktemp("prior")
    export = export_writer(folder / "v1", catalogue.product_ids, catalogue.embeddings, catalogue.is_new)
    published = publish_model_repository(*export, str(folder / "repo"), serving_config)
    with TritonServer(published.path, serving_config, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield Path(published.path), server


def test_a_refreshed_prior_is_served_without_downtime_then_rolled_back(
        served: tuple[Path, TritonServer], serving_config: ServingConfig, tmp_path: Path) -> None:
    repository, server = served
    events_file = tmp_path / "recent.csv"
    recent_events().to_csv(events_file, index=False)
    failures: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        with FashionrecClient(server.grpc_url, "grpc", serving_config) as client:
            while not stop.is_set():
                try:
                    client.recommend(["P000003", "P000004"], 5)
                except RecommendError as error:
                    failures.append(str(error))

    thread = threading.Thread(target=stream)
    thread.start()
    try:
        refreshed = refresh_prior(str(repository), str(events_file), serving_config, EXPORT, server.grpc_url)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert (refreshed.version, refreshed.base_version, refreshed.events_used, refreshed.events_dropped) == (2, 1, 9, 2)
    # popularity: P000042 3 * 5 (purchase) = 15, P000007 6 * 1 * 1/4 = 1.5; mean over 300 products 16.5 / 300
    mean = 16.5 / 300
    expected = {"P000042": np.log1p(15 / mean), "P000007": np.log1p(1.5 / mean)}
    with FashionrecClient(server.grpc_url, "grpc", serving_config) as client:
        assert client.served_version() == 2
        trending = client.recommend(["UNKNOWN"], 3)  # zero customer vector: the prior alone
    assert [r.product_id for r in trending[:2]] == ["P000042", "P000007"]
    np.testing.assert_allclose([r.score for r in trending[:2]], 1 / (1 + np.exp(-np.array(list(expected.values())))),
                               rtol=1e-5)
    assert trending[2].score == pytest.approx(0.5)  # every other product: prior 0
    entry = json.loads((repository / MANIFEST_FILE).read_text())["versions"][-1]
    assert entry["catalogue_update"]["popularity_prior"]["events_used"] == 9

    command = [sys.executable, "-m", "fashionrec.app.cli", "model", "rollback", "--model-repository", str(repository),
               "--url", server.grpc_url]
    assert subprocess.run(command, capture_output=True, text=True, check=False).returncode == 0
    with FashionrecClient(server.grpc_url, "grpc", serving_config) as client:
        assert [r.score for r in client.recommend(["UNKNOWN"], 2)] == [0.5, 0.5]  # version 1: no prior


def test_events_without_a_usable_row_are_refused_and_nothing_is_published(
        served: tuple[Path, TritonServer], serving_config: ServingConfig, tmp_path: Path) -> None:
    repository, _ = served
    before = json.loads((repository / MANIFEST_FILE).read_text())["versions"]
    junk = recent_events().iloc[-2:]  # an unknown product and an unknown event type
    with pytest.raises(ValueError, match="no usable events .*unknown_event_type"):
        refresh_prior(str(repository), junk, serving_config, EXPORT)
    assert json.loads((repository / MANIFEST_FILE).read_text())["versions"] == before


def test_the_cli_refreshes_the_prior_as_of_a_given_time(served: tuple[Path, TritonServer], tmp_path: Path) -> None:
    repository, server = served
    events_file = tmp_path / "recent.parquet"
    recent_events().to_parquet(events_file)
    command = [sys.executable, "-m", "fashionrec.app.cli", "catalogue", "refresh-prior", "--model-repository",
               str(repository), "--events", str(events_file), "--as-of", "2026-12-03T12:00:00", "--url", server.grpc_url]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "recomputed from 9 events (2 dropped) as of 2026-12-03 12:00:00+00:00" in result.stdout
    entry = json.loads((repository / MANIFEST_FILE).read_text())["versions"][-1]
    assert entry["catalogue_update"]["popularity_prior"]["as_of"] == "2026-12-03 12:00:00+00:00"
