"""`embed_products` and `catalogue add` on a REAL tritonserver (explicit model control).

The repository is published with a content tower (random weights, the export's format) whose new
products' catalogue rows ARE its content embeddings, as the export stage writes them. Then: the served
model equals the numpy twin (and those rows), bad requests fail alone, products are added while a
client streams recommendations (zero failures), the added products are recommendable with numpy's
scores, and a rollback returns to the previous catalogue.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tritonclient.http as httpclient

from fashionrec.app.client import FashionrecClient, History, RecommendError, RequestRejected
from fashionrec.config import ServingConfig
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import publish_model_repository
from fashionrec.contract import content
from fashionrec.repository.catalogue import add_products
from fashionrec.serving.server import TritonServer

DIM = 16
WORDS = ["red", "blue", "linen", "wool", "dress", "coat", "skirt", "shirt", "long", "short"]
CATEGORIES = ["dresses", "coats", "skirts"]
OLD = 120  # products in the published catalogue; the last NEW_AT_PUBLISH of them are new (content only)
NEW_AT_PUBLISH = 20
# the popularity prior published with version 1: the products new at publish have none
PRIOR = np.where(np.arange(OLD) >= OLD - NEW_AT_PUBLISH, 0.0, np.random.default_rng(8).uniform(0, 0.5, OLD)).astype(np.float32)
BLESSING = {"blessed": True, "reasons": [], "metrics": {"recall@20": 0.25}}


def make_tower(seed: int = 1) -> content.ContentTower:
    """A content tower in the export's format: small vocabularies, random weights of scale ~1."""
    rng = np.random.default_rng(seed)
    features = {"format": 1, "max_tokens": 5, "oov_buckets": 1, "temperature": 0.2, "normalize": True,
                "gelu": "erf", "vocabularies": {"tokens": WORDS, "category": CATEGORIES, "colour": ["red", "blue"],
                                                "brand": ["acme", "zeta"]},
                "price": {"boundaries": [20.0, 40.0, 80.0], "mean": 3.5, "var": 0.6}}
    shapes = {"tokens": (len(WORDS) + 2, 6), "category": (4, 3), "colour": (3, 3), "brand": (3, 3),
              "price_bucket": (4, 3), "hidden_kernel": (19, 24), "hidden_bias": (24,), "output_kernel": (24, DIM),
              "output_bias": (DIM,)}
    return content.ContentTower(features, {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()})


def products(ids: list[str], seed: int) -> pd.DataFrame:
    """Raw catalogue rows (some words unknown to the tower, some odd casing)."""
    rng = np.random.default_rng(seed)
    vocabulary = [*WORDS, "sequin", "TWEED"]
    return pd.DataFrame({
        "product_id": ids,
        "title": [" ".join(rng.choice(vocabulary, 3)).title() for _ in ids],
        "description": [" ".join(rng.choice(vocabulary, 4)) for _ in ids],
        "category": rng.choice([*CATEGORIES, "hats"], len(ids)),
        "colour": rng.choice(["red", "blue", "green"], len(ids)),
        "brand": rng.choice(["acme", "zeta"], len(ids)),
        "price": np.round(rng.uniform(5, 150, len(ids)), 2),
    })


def as_products(frame: pd.DataFrame) -> list[content.ProductContent]:
    return [content.ProductContent(r.title, r.category, r.price, r.description, r.colour, r.brand)
            for r in frame.itertuples()]


@pytest.fixture(scope="module")
def tower() -> content.ContentTower:
    return make_tower()


@pytest.fixture(scope="module")
def shop(tower: content.ContentTower) -> tuple[pd.DataFrame, np.ndarray]:
    """Old products with arbitrary (trained) embeddings; new ones with their content embeddings."""
    frame = products([f"P{i:04d}" for i in range(OLD)], seed=5)
    embeddings = np.random.default_rng(6).normal(size=(OLD, DIM)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True) * np.sqrt(0.2)
    embeddings[-NEW_AT_PUBLISH:] = tower.embed(as_products(frame.iloc[-NEW_AT_PUBLISH:]))
    return frame, embeddings


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, serving_config: ServingConfig, tower: content.ContentTower,
           shop: tuple[pd.DataFrame, np.ndarray], export_writer: Callable) -> Iterator[tuple[Path, TritonServer]]:
    frame, embeddings = shop
    folder = tmp_path_factory.mktemp("embed")
    is_new = np.arange(OLD) >= OLD - NEW_AT_PUBLISH
    embeddings_path, blessing_path = export_writer(folder / "export", list(frame["product_id"]), embeddings, is_new,
                                                   PRIOR)
    tower.save(folder / "export")
    Path(blessing_path).write_text(json.dumps(BLESSING))
    published = publish_model_repository(embeddings_path, blessing_path, str(folder / "repo"), serving_config,
                                         metadata={"run": "test"})
    with TritonServer(published.path, serving_config, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield Path(published.path), server


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_embed_products_equals_the_numpy_twin_and_the_exported_rows(
        served: tuple[Path, TritonServer], serving_config: ServingConfig, tower: content.ContentTower,
        shop: tuple[pd.DataFrame, np.ndarray], protocol: str) -> None:
    _, server = served
    frame, embeddings = shop
    unseen = [content.ProductContent("\u212aELVIN Sequin-DRESS \u00e9t\u00e9", "hats", 0.0, colour="green"),
              content.ProductContent("red", "dresses", 40.0)]  # a price on a bucket boundary
    wanted = [*as_products(frame.iloc[-NEW_AT_PUBLISH:]), *unseen]
    url = server.http_url if protocol == "http" else server.grpc_url
    with FashionrecClient(url, protocol, serving_config) as client:
        served_embeddings = client.embed_products(wanted)
    assert served_embeddings.shape == (NEW_AT_PUBLISH + 2, DIM) and served_embeddings.dtype == np.float32
    np.testing.assert_allclose(served_embeddings, tower.embed(wanted), rtol=0, atol=1e-6)
    np.testing.assert_allclose(served_embeddings[:NEW_AT_PUBLISH], embeddings[-NEW_AT_PUBLISH:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(served_embeddings, axis=1), 1 / np.sqrt(0.2), rtol=1e-5)


def test_bad_embed_requests_fail_alone_and_the_server_stays_up(
        served: tuple[Path, TritonServer], serving_config: ServingConfig, tower: content.ContentTower) -> None:
    _, server = served
    good = content.ProductContent("blue coat", "coats", 60.0)
    with FashionrecClient(server.grpc_url, "grpc", serving_config) as client:
        for price in (-1.0, float("nan")):
            with pytest.raises(RequestRejected, match="PRICE must be finite and non-negative"):  # 4xx, not 500
                client.embed_products([good, content.ProductContent("x", "coats", price)])
        np.testing.assert_allclose(client.embed_products([good]), tower.embed([good]), atol=1e-6)
    raw = httpclient.InferenceServerClient(server.http_url)
    try:
        title = httpclient.InferInput("TITLE", [1, 2], "BYTES")  # two values in a one-value field
        title.set_data_from_numpy(np.array([[b"a", b"b"]], dtype=np.object_))
        category = httpclient.InferInput("CATEGORY", [1, 1], "BYTES")
        category.set_data_from_numpy(np.array([[b"coats"]], dtype=np.object_))
        price = httpclient.InferInput("PRICE", [1, 1], "FP32")
        price.set_data_from_numpy(np.array([[3.0]], np.float32))
        with pytest.raises(Exception, match="(?i)shape|dims"):
            raw.infer(serving_config.embed_model_name, [title, category, price])
        assert raw.is_server_live() and raw.is_model_ready(serving_config.embed_model_name)
    finally:
        raw.close()


def test_a_version_without_content_tower_refuses_embed_requests(fashion: FashionrecClient) -> None:
    with pytest.raises(RecommendError, match="has no content tower"):
        fashion.embed_products([content.ProductContent("red dress", "dresses", 10.0)])


class Stream:
    """One gRPC client asking `recommend` in a loop until stopped; failures kept."""

    def __init__(self, url: str, serving: ServingConfig, history: History) -> None:
        self.url, self.serving, self.history = url, serving, history
        self.answers = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        with FashionrecClient(self.url, "grpc", self.serving) as client:
            while not self.stop.is_set():
                try:
                    client.recommend(self.history, 10)
                except RecommendError as error:
                    self.failures.append(str(error))
                self.answers += 1

    def __enter__(self) -> Stream:
        self.thread.start()
        while self.answers < 3:
            self.stop.wait(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        mark = self.answers
        while self.answers < mark + 20:  # keep asking after the switch
            self.stop.wait(0.01)
        self.stop.set()
        self.thread.join()


def test_added_products_are_served_without_downtime_then_rolled_back(
        served: tuple[Path, TritonServer], serving_config: ServingConfig, tower: content.ContentTower,
        shop: tuple[pd.DataFrame, np.ndarray], aggregation: dict, tmp_path: Path) -> None:
    repository, server = served
    old_frame, old_embeddings = shop
    added = products([f"N{i:03d}" for i in range(15)], seed=11)
    added_file = tmp_path / "new_products.csv"
    added.to_csv(added_file, index=False)
    history = History(["P0001", "P0002"], weights=[1.0, 1.0])

    with Stream(server.grpc_url, serving_config, history) as stream:
        update = add_products(str(repository), str(added_file), serving_config, server_url=server.grpc_url)
    assert stream.failures == [] and stream.answers > 20
    assert (update.version, update.base_version, update.added, update.num_products) == (
        2, 1, list(added["product_id"]), OLD + 15)

    new_embeddings = tower.embed(as_products(added))
    # recency pooling as published: the older event is halved per half_life_events newer events
    older_weight = 0.5 ** (1 / aggregation["half_life_events"])
    vector = np.average(old_embeddings[[1, 2]].astype(np.float64), axis=0, weights=[older_weight, 1.0])
    dots = new_embeddings.astype(np.float64) @ vector
    order = sorted(range(len(dots)), key=lambda i: (-dots[i], i))[:5]
    with FashionrecClient(server.grpc_url, "grpc", serving_config) as client:
        assert client.served_version() == 2
        # the old products keep their popularity prior; the added ones have none yet (dots above: no prior)
        old_ids = list(old_frame["product_id"][3:15])  # not the history's P0001, P0002
        old_logits = old_embeddings[3:15].astype(np.float64) @ vector + PRIOR[3:15]
        got = client.recommend(history, 12, candidates=old_ids)
        np.testing.assert_allclose([r.score for r in got], 1 / (1 + np.exp(-np.sort(old_logits)[::-1])), rtol=1e-5)
        got = client.recommend(history, 5, candidates=list(added["product_id"]))
        assert [r.product_id for r in got] == [added["product_id"][i] for i in order]
        np.testing.assert_allclose([r.score for r in got], 1 / (1 + np.exp(-dots[order])), rtol=1e-5)
        new_in = {r.product_id for r in client.recommend(history, 100, candidate_set="new_in")}
        assert set(added["product_id"]) <= new_in and len(new_in) == NEW_AT_PUBLISH + 15
        # a history made of one added product finds it and its nearest added neighbours first
        nearest = added["product_id"][int(np.argmax(new_embeddings[1:] @ new_embeddings[0])) + 1]
        top = [r.product_id for r in client.recommend(History(["N000"]), 2, candidates=list(added["product_id"]))]
        assert top == ["N000", nearest]

    manifest = json.loads((repository / MANIFEST_FILE).read_text())
    entry = manifest["versions"][-1]
    assert entry["catalogue_update"]["base_version"] == 1
    assert entry["catalogue_update"]["added_product_ids"] == list(added["product_id"])
    assert entry["blessing"] == BLESSING and entry["metadata"] == {"run": "test"} and entry["content_tower"]

    with pytest.raises(ValueError, match="2 products are already in the served catalogue: P0003, N001"):
        add_products(str(repository), pd.concat([old_frame.iloc[[3]], added.iloc[[1]]]), serving_config)

    command = [sys.executable, "-m", "fashionrec.app.cli", "model", "rollback", "--model-repository", str(repository),
               "--url", server.grpc_url]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    with FashionrecClient(server.grpc_url, "grpc", serving_config) as client:
        assert client.served_version() == 1
        with pytest.raises(RecommendError, match="unknown product ids in CANDIDATE_PRODUCT_IDS"):
            client.recommend(history, 5, candidates=["N000"])


def test_catalogue_add_command_reports_the_new_version(served: tuple[Path, TritonServer], tmp_path: Path) -> None:
    repository, server = served
    added_file = tmp_path / "more.parquet"
    products(["Z1", "Z2"], seed=12).to_parquet(added_file)
    bad_file = tmp_path / "bad.csv"
    products(["Z3"], seed=13).assign(price=-5).to_csv(bad_file, index=False)
    base = [sys.executable, "-m", "fashionrec.app.cli", "catalogue", "add", "--model-repository", str(repository)]
    bad = subprocess.run([*base, "--products", str(bad_file)], capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "bad_price" in bad.stderr
    good = subprocess.run([*base, "--products", str(added_file), "--url", server.grpc_url, "--protocol", "grpc"],
                          capture_output=True, text=True, check=False)
    assert good.returncode == 0, good.stderr
    served_version = json.loads((repository / MANIFEST_FILE).read_text())["serving_version"]
    assert "Added 2 products to version" in good.stdout and f"serving version {served_version}" in good.stdout
