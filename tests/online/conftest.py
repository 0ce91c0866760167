"""Fixtures for the shop service's tests: a real redis-server on a free port, and a running shop: a small
synthetic catalogue published to a real tritonserver with the service (`fashionrec shop serve`) in front."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from fashionrec.app.lab import ShopInputs, ShopService
from fashionrec.config import EventWeights, ServingConfig, ShopConfig
from fashionrec.datasets.synthetic import generate_shop
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving.server import TritonServer
from fashionrec.stages.export import category_candidate_sets

REDIS_START_TIMEOUT_S = 10.0
REDIS_STOP_TIMEOUT_S = 10.0
POLL_S = 0.05


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; tiny race until a server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A throwaway ``redis-server`` on 127.0.0.1, in memory only (no RDB snapshots, no AOF)."""

    def __init__(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed: `make test` installs it (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process = subprocess.Popen(
            [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_it_answers()

    def _wait_until_it_answers(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0)
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        try:
            while True:
                if self._process.poll() is not None:
                    pytest.fail(f"redis-server on port {self.port} exited with {self._process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        self.stop()
                        pytest.fail(f"redis-server on port {self.port} did not answer PING "
                                    f"within {REDIS_START_TIMEOUT_S} s")
                    time.sleep(POLL_S)
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit in time)."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(REDIS_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """``redis://127.0.0.1:<port>/0`` of a real redis-server started for the test module."""
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may stop."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (a backend that is down)."""
    return free_port()


# -- a running shop: a small synthetic catalogue published to a REAL tritonserver, and the service as a
# -- subprocess (`fashionrec shop serve`: the real CLI and uvicorn) on free ports -------------------------

SHOP_SIZE = ShopConfig(num_customers=300, num_products=240, num_weeks=4, events_per_customer=12.0)
SHOP_DIM = 16
SALE_EVERY = 5  # every fifth product is on sale


@dataclass(frozen=True)
class ShopFiles:
    """What a shop service is started from, and the synthetic shop behind it."""

    catalogue: str
    history: str
    model_repository: str
    frame: pd.DataFrame  # the catalogue
    events: pd.DataFrame  # the past events that seed the store


@pytest.fixture(scope="session")
def shop_files(tmp_path_factory: pytest.TempPathFactory) -> ShopFiles:
    """A synthetic shop whose embeddings are its categories (plus noise), so that similar items and favourite
    categories have a right answer; published as version 1 with a sale set, new_in and, as the export stage
    writes them, one candidate set per category."""
    folder = tmp_path_factory.mktemp("shop")
    shop = generate_shop(SHOP_SIZE)
    catalogue, events = shop.catalogue, shop.events.copy()
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True)
    events["weight"] = events["event_type"].map(EventWeights().as_dict()).astype("float32")
    rng = np.random.default_rng(5)
    categories = {c: rng.normal(size=SHOP_DIM) for c in sorted(catalogue["category"].unique())}
    embeddings = np.stack([categories[c] for c in catalogue["category"]]) + rng.normal(size=(len(catalogue), SHOP_DIM)) * 0.3
    counts = events["product_id"].value_counts().reindex(catalogue["product_id"], fill_value=0).to_numpy()
    prior = np.log1p(counts / max(counts.mean(), 1e-9)).astype(np.float32)
    ids = catalogue["product_id"].tolist()
    columns = {"product_id": ids, "embedding": pa.array([r.tolist() for r in embeddings.astype(np.float32)],
                                                         type=pa.list_(pa.float32())),
               "is_new": counts == 0, "popularity_prior": pa.array(prior, pa.float32())}
    pq.write_table(pa.table(columns), folder / "embeddings.parquet")
    (folder / "aggregation.json").write_text(json.dumps(
        {"pooling": "recency", "half_life_days": 7.0, "half_life_events": 5.0,
         "event_weights": EventWeights().as_dict(), "window": 50}))
    (folder / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    published = publish_model_repository(str(folder / "embeddings.parquet"), str(folder / "blessing.json"),
                                         str(folder / "model_repository"), ServingConfig(),
                                         candidate_sets={"sale": ids[::SALE_EVERY],
                                                         **category_candidate_sets(catalogue, ids)})
    catalogue.to_parquet(folder / "catalogue.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    return ShopFiles(str(folder / "catalogue.parquet"), str(folder / "events.parquet"), published.path, catalogue,
                     events)


@pytest.fixture(scope="session")
def shop_triton(shop_files: ShopFiles) -> Iterator[TritonServer]:
    with TritonServer(shop_files.model_repository, ServingConfig(), http_port=0, grpc_port=0,
                      metrics_port=0) as server:
        yield server


SHOP_START_S = 60.0  # the service imports the seed history before it answers


def shop_process(folder: Path, files: ShopFiles, triton_url: str, *settings: str) -> ShopService:
    """A shop service (not started) with its own state, journal and log under ``folder``."""
    inputs = ShopInputs(files.catalogue, files.history, files.model_repository)
    return ShopService(inputs, triton_url, folder, settings, start_s=SHOP_START_S)


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, shop_files: ShopFiles, shop_triton: TritonServer) -> Iterator[ShopService]:
    """A shop service over the real Triton, for a test module."""
    running = shop_process(tmp_path_factory.mktemp("service"), shop_files, shop_triton.grpc_url).start()
    yield running
    running.stop()


@pytest.fixture
def start_shop(tmp_path_factory: pytest.TempPathFactory, shop_files: ShopFiles):
    """``start_shop(triton_url, folder=None, *settings, files=None)``: a started shop service of the test's own (a
    new folder unless given: a restart reuses one; other ``files`` than the shared shop's if given); all are
    stopped after the test."""
    started: list[ShopService] = []

    def start(triton_url: str, folder: Path | None = None, *settings: str, files: ShopFiles | None = None) -> ShopService:
        running = shop_process(folder or tmp_path_factory.mktemp("service"), files or shop_files, triton_url, *settings)
        started.append(running.start())
        return running

    yield start
    for running in started:
        running.stop()
