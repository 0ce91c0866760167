"""Products added without retraining (`fashionrec catalogue add`) reach a RUNNING shop service without a restart,
on a REAL tritonserver (explicit model control) over a copy of the shared shop's repository: the product page,
the category page, search and the event API know them within a few refreshes, and the log's catalogue.parquet
(what the next training run reads) holds them; a restarted service knows them at once."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
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
from fashionrec.contract import content
from fashionrec.datasets import synthetic
from fashionrec.online.catalogue import ShopCatalogue
from fashionrec.repository.catalogue import ADDITIONS_PREFIX, add_products
from fashionrec.repository.manifest import read_manifest
from fashionrec.repository.publish import publish_model_repository
from fashionrec.repository.served import served_version
from fashionrec.serving.server import TritonServer
from fashionrec.stages.ingest import validate_catalogue

REFRESH_S = 0.5
SHOWN_WITHIN_S = 10 * REFRESH_S + 5  # a few refreshes, plus loading the version into Triton on two busy cores


def shop_tower(catalogue: pd.DataFrame, dim: int, seed: int = 11) -> content.ContentTower:
    """A content tower in the export's format over the synthetic shop's words, categories, colours and brands
    (random weights: what matters here is that new products can be embedded, not how well)."""
    words = sorted({w for style in synthetic._STYLES.values() for w in style} | set(synthetic._GENERIC_WORDS)
                   | set(synthetic._COLOURS) | set(synthetic._CATEGORIES))
    vocabularies = {"tokens": words, "category": sorted(catalogue["category"].unique()),
                    "colour": sorted(catalogue["colour"].unique()), "brand": sorted(catalogue["brand"].unique())}
    features = {"format": 1, "max_tokens": 12, "oov_buckets": 1, "temperature": 0.2, "normalize": True,
                "gelu": "erf", "vocabularies": vocabularies,
                "price": {"boundaries": [20.0, 40.0, 80.0], "mean": 3.5, "var": 0.6}}
    shapes = {"tokens": (len(words) + 2, 6), **{name: (len(vocabularies[name]) + 1, 3) for name in content.CATEGORICAL},
              "price_bucket": (4, 3), "hidden_kernel": (19, 24), "hidden_bias": (24,), "output_kernel": (24, dim),
              "output_bias": (dim,)}
    rng = np.random.default_rng(seed)
    return content.ContentTower(features, {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()})


def copy_with_content_tower(shop_files, folder: Path):
    """``shop_files`` over a COPY of its repository in which version 2 (served) is version 1 plus a content tower,
    as an export with one publishes it, so products can be added to it (the shared repository is left alone)."""
    repository = folder / "model_repository"
    shutil.copytree(shop_files.model_repository, repository)
    v1 = served_version(str(repository), ServingConfig())
    export = folder / "export"
    export.mkdir()
    columns = {"product_id": v1.product_ids, "is_new": np.zeros(len(v1.product_ids), bool),
               "embedding": pa.array([row.tolist() for row in v1.embeddings], type=pa.list_(pa.float32())),
               "popularity_prior": pa.array(v1.prior, pa.float32())}
    pq.write_table(pa.table(columns), export / "embeddings.parquet")
    v1.aggregation.write(str(export / "aggregation.json"))
    (export / "blessing.json").write_text('{"blessed": true, "reasons": []}')
    shop_tower(shop_files.frame, v1.embeddings.shape[1]).save(export)
    published = publish_model_repository(str(export / "embeddings.parquet"), str(export / "blessing.json"),
                                         str(repository), ServingConfig(), candidate_sets=v1.candidate_sets)
    assert published.version == 2
    return dataclasses.replace(shop_files, model_repository=str(repository))


@pytest.fixture(scope="module")
def tower_files(tmp_path_factory: pytest.TempPathFactory, shop_files):
    return copy_with_content_tower(shop_files, tmp_path_factory.mktemp("new-products"))


@pytest.fixture(scope="module")
def tower_triton(tower_files) -> Iterator[TritonServer]:
    with TritonServer(tower_files.model_repository, ServingConfig(), http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield server


def new_products(category: str) -> pd.DataFrame:
    return pd.DataFrame({"product_id": ["NEW-0001", "NEW-0002"],
                         "title": ["Zephyrine linen dress", "Zephyrine wool coat"],
                         "description": ["A breezy linen piece.", "A soft wool piece."],
                         "category": [category, category], "colour": ["blue", "navy"], "brand": ["Norvel", "Norvel"],
                         "price": [59.0, 129.0]})


def _get(url: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(f"{url}{path}", params={"customer_id": "C000001", **params}, timeout=30.0)


def test_a_catalogue_extended_equals_one_loaded_whole(shop_files):
    """``ShopCatalogue.extended`` (what the service swaps in) equals the catalogue built from every product at once,
    caches included, and leaves the one it extends untouched."""
    frame, _ = validate_catalogue(shop_files.frame, "shop")
    added, _ = validate_catalogue(new_products("dress"), "new")
    base = ShopCatalogue.from_frame(frame)
    base.category_set("dress")  # a cache filled before the extension
    extended = base.extended(pd.concat([added, frame.head(3)]))  # ids it knows are left as they are
    whole = ShopCatalogue.from_frame(pd.concat([frame, added], ignore_index=True))
    assert (extended.cards, extended.by_category, extended.index, extended.position) == (
        whole.cards, whole.by_category, whole.index, whole.position)
    assert extended.category_set("dress") == whole.category_set("dress") and "NEW-0001" in extended.category_set("dress")
    assert "NEW-0001" not in base.cards and "NEW-0001" not in base.category_set("dress")
    assert extended.search_tiers("zephyrine linen")[0] == ["NEW-0001"]
    assert base.extended(frame.head(5)) is base  # nothing new: the same catalogue


def _frozen_objects(url: str) -> float:
    """The service's ``fashionrec_shop_frozen_objects`` gauge."""
    metrics = httpx.get(f"{url}/metrics", timeout=30.0).text
    return float(re.search(r"^fashionrec_shop_frozen_objects (\S+)$", metrics, re.MULTILINE).group(1))


def test_added_products_reach_the_running_shop_and_its_log(tmp_path: Path, shop_files, tower_files,
                                                          tower_triton: TritonServer, start_shop) -> None:
    repository = tower_files.model_repository
    category = shop_files.frame["category"].value_counts().index[-1]  # the smallest: one page shows it whole
    shop = start_shop(tower_triton.grpc_url, tmp_path, f"online.served_refresh_s={REFRESH_S}", files=tower_files)
    try:
        assert _get(shop.url, "/v1/products/NEW-0001").status_code == 404
        frozen_at_start = _frozen_objects(shop.url)
        update = add_products(repository, new_products(category), ServingConfig(), server_url=tower_triton.grpc_url)
        assert (update.base_version, update.version, update.added) == (2, 3, ["NEW-0001", "NEW-0002"])
        added = time.monotonic()
        while (page := _get(shop.url, "/v1/products/NEW-0001")).status_code == 404:
            assert time.monotonic() - added < SHOWN_WITHIN_S, "the shop never showed the added product"
            time.sleep(0.1)
        shown_after = time.monotonic() - added
        print(f"\nthe added product's page answered {shown_after:.2f} s after `catalogue add` returned")
        assert _frozen_objects(shop.url) > frozen_at_start > 0  # the new version's view and catalogue, settled too
        assert page.status_code == 200, page.text
        assert page.json()["product"]["title"] == "Zephyrine linen dress"
        listed = _get(shop.url, f"/v1/categories/{category}", page_size=100).json()
        assert {"NEW-0001", "NEW-0002"} <= {p["product_id"] for p in listed["products"]}
        assert listed["total"] == (shop_files.frame["category"] == category).sum() + 2
        found = _get(shop.url, "/v1/search", q="zephyrine").json()
        assert {p["product_id"] for p in found["products"]} == {"NEW-0001", "NEW-0002"}  # their word only
        sizes = {c["name"]: c["products"] for c in httpx.get(f"{shop.url}/v1/categories").json()["categories"]}
        assert sizes[category] == listed["total"]
        posted = httpx.post(f"{shop.url}/v1/events", timeout=30.0, json={"events": [
            {"customer_id": "C000001", "product_id": "NEW-0002", "event_type": "click",
             "request_id": listed["request_id"]}]})
        assert posted.json() == {"accepted": 1, "rejected": []}
        assert _get(shop.url, "/v1/homepage").status_code == 200  # the new version ranks for the customer
    finally:
        shop.stop()
    log = tmp_path / "log"
    catalogue = pd.read_parquet(log / "catalogue.parquet")
    assert len(catalogue) == len(shop_files.frame) + 2 and catalogue["product_id"].is_unique
    assert list(catalogue["product_id"].tail(2)) == ["NEW-0001", "NEW-0002"]
    assert catalogue.set_index("product_id").loc["NEW-0002", "title"] == "Zephyrine wool coat"
    events = pd.read_parquet(log / "events")
    assert "NEW-0002" in set(events["product_id"])
    # a restart (the same --catalogue, which lacks them) knows them at once, before any refresh
    again = start_shop(tower_triton.grpc_url, tmp_path, "online.served_refresh_s=3600", files=tower_files)
    try:
        assert _get(again.url, "/v1/products/NEW-0002").json()["product"]["title"] == "Zephyrine wool coat"
    finally:
        again.stop()
    assert len(pd.read_parquet(log / "catalogue.parquet")) == len(shop_files.frame) + 2
    # the shared repository is untouched
    assert [e["version"] for e in read_manifest(shop_files.model_repository)["versions"]] == [1]
    assert not list(Path(shop_files.model_repository).glob(f"{ADDITIONS_PREFIX}*"))
    assert json.loads((Path(repository) / "fashionrec_manifest.json").read_text())["versions"][-1][
        "catalogue_update"]["products_file"].startswith(ADDITIONS_PREFIX)
