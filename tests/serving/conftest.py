"""Fixtures for serving tests: a small published catalogue and a REAL tritonserver on free ports.

The server is session-scoped (start ~1 s, stop ~3 s). The first run on a machine also builds the
serving venv (about a minute; reused afterwards, see fashionrec.serving.environment).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashionrec.config import ServingConfig
from fashionrec.repository.publish import PublishedModel, publish_model_repository
from fashionrec.app.client import FashionrecClient, RecommendClient
from fashionrec.serving.server import TritonServer

NUM_PRODUCTS = 300
DIM = 16
NUM_NEW = 30  # the last products are "new": never seen in training, content embedding only
# Small limits make the bad-request tests cheap; a long queue delay makes dynamic batching visible. The
# history limit stays the default (10,000 ids): the tests send whole seen-histories that long, over
# HTTP and gRPC, and one more id is refused.
TEST_SERVING = ServingConfig(max_top_k=100, max_queue_delay_us=10_000, max_candidates=120, similar_alpha=0.3)
WINDOW = 16  # the pooling window: shorter than some test histories, so that only their last events pool
# Published beside the embeddings, as the export stage writes it: recency pooling (by age and by the
# number of newer events) of the last WINDOW events with these weights.
AGGREGATION = {"pooling": "recency", "half_life_days": 10.0, "half_life_events": 4.0,
               "event_weights": {"click": 1.0, "add_to_bag": 3.0, "save_for_later": 2.0, "purchase": 5.0},
               "window": WINDOW}
CANDIDATE_SETS = {"sale": [f"P{i:06d}" for i in range(0, 300, 7)], "category:dresses": [f"P{i:06d}" for i in range(40, 90)]}


@dataclass(frozen=True)
class Catalogue:
    """What was published, for numpy reference answers in the tests."""

    product_ids: list[str]
    embeddings: np.ndarray
    is_new: np.ndarray
    new_product: str  # a new product the history of `pointing_history` points at
    pointing_history: list[str]
    aggregation: dict
    candidate_sets: dict[str, list[str]]  # as published, new_in included
    prior: np.ndarray  # the popularity prior added to each product's logit (0 for the new products)


def _make_catalogue() -> Catalogue:
    """Random embeddings, plus a new product and two old ones lying in its direction."""
    rng = np.random.default_rng(2024)
    embeddings = (rng.normal(size=(NUM_PRODUCTS, DIM)) * 0.3).astype(np.float32)
    direction = rng.normal(size=DIM)
    direction /= np.linalg.norm(direction)
    new_row, old_rows = NUM_PRODUCTS - 1, [10, 11]
    embeddings[new_row] = 2.0 * direction
    embeddings[old_rows] = 0.5 * direction + rng.normal(size=(2, DIM)) * 0.05
    ids = [f"P{i:06d}" for i in range(NUM_PRODUCTS)]
    is_new = np.arange(NUM_PRODUCTS) >= NUM_PRODUCTS - NUM_NEW
    sets = {**CANDIDATE_SETS, "new_in": [pid for pid, new in zip(ids, is_new, strict=True) if new]}
    prior = np.where(is_new, 0.0, rng.uniform(0.0, 0.2, NUM_PRODUCTS)).astype(np.float32)
    return Catalogue(ids, embeddings, is_new, ids[new_row], [ids[r] for r in old_rows], AGGREGATION, sets, prior)


@pytest.fixture(scope="session")
def serving_config() -> ServingConfig:
    """The ServingConfig the test repository is published and served with."""
    return TEST_SERVING


@pytest.fixture(scope="session")
def drill_serving_config(serving_config: ServingConfig) -> ServingConfig:
    """``serving_config`` with a 3 s shutdown timeout, for a server a drill makes fail a load: Triton 2.51 then
    keeps a live model it waits for at exit, its whole exit timeout (30 s by default)."""
    return dataclasses.replace(serving_config, shutdown_timeout_s=3.0)


@pytest.fixture(scope="session")
def catalogue() -> Catalogue:
    return _make_catalogue()


@pytest.fixture(scope="session")
def published(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue) -> PublishedModel:
    """The catalogue exported as the export stage would, blessed, and published as version 1."""
    folder = tmp_path_factory.mktemp("publish")
    embeddings, blessing = write_export(folder, catalogue.product_ids, catalogue.embeddings, catalogue.is_new,
                                        catalogue.prior)
    return publish_model_repository(embeddings, blessing, str(folder / "model_repository"), TEST_SERVING,
                                    candidate_sets=CANDIDATE_SETS)


def write_export(folder, product_ids: list[str], embeddings: np.ndarray, is_new: np.ndarray,
                 prior: np.ndarray | None = None) -> tuple[str, str]:
    """embeddings.parquet (with the popularity prior if given) + aggregation.json (as the export stage
    writes them) and a blessing."""
    folder.mkdir(parents=True, exist_ok=True)
    column = pa.array([row.tolist() for row in embeddings], type=pa.list_(pa.float32()))
    columns = {"product_id": product_ids, "embedding": column, "is_new": is_new}
    if prior is not None:
        columns["popularity_prior"] = pa.array(prior, pa.float32())
    pq.write_table(pa.table(columns), folder / "embeddings.parquet")
    (folder / "aggregation.json").write_text(json.dumps(AGGREGATION))
    (folder / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    return str(folder / "embeddings.parquet"), str(folder / "blessing.json")


@pytest.fixture(scope="session")
def triton(published: PublishedModel) -> Iterator[TritonServer]:
    """A real tritonserver on free loopback ports, serving the published repository."""
    with TritonServer(published.path, TEST_SERVING, http_port=0, grpc_port=0, metrics_port=0) as server:
        yield server


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, triton: TritonServer) -> Iterator[RecommendClient]:
    """A RecommendClient per protocol, on the shared server."""
    url = triton.http_url if request.param == "http" else triton.grpc_url
    with RecommendClient(url, request.param, TEST_SERVING.model_name) as recommend_client:
        yield recommend_client


@pytest.fixture(params=["http", "grpc"])
def fashion(request: pytest.FixtureRequest, triton: TritonServer) -> Iterator[FashionrecClient]:
    """The typed client of every touchpoint, per protocol, on the shared server."""
    url = triton.http_url if request.param == "http" else triton.grpc_url
    with FashionrecClient(url, request.param, TEST_SERVING) as typed_client:
        yield typed_client


@pytest.fixture(scope="session")
def aggregation() -> dict:
    """The aggregation.json that :func:`write_export` publishes, for reference answers."""
    return AGGREGATION


@pytest.fixture(scope="session")
def export_writer():
    """:func:`write_export`, for test modules (conftest is not importable under --import-mode=importlib)."""
    return write_export
