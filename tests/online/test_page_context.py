"""Context on page requests: ``device``, ``region`` and ``local_time`` checked with the event API's rules,
passed to every Triton call a page makes, and logged with its impressions.

The end-to-end half runs the real service over a REAL tritonserver serving a version whose export has
hand-made context tables (``context.json``): device ``mobile`` pushes the customer vector so hard towards one
product's embedding ``e`` that every ranking the page asks for follows ``e . q`` (so each carousel shows
whether its own Triton call carried the context), and one local hour pushes towards another product.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from fashionrec.app.lab import ShopService
from fashionrec.config import IngestConfig, ServingConfig
from fashionrec.contract.context import CONTEXT_FILE, ContextTables
from fashionrec.online.context import CONTEXT_MAX_LENGTH, page_context
from fashionrec.online.views import NO_CONTEXT, BadContext, PageContext
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving.requests import RequestContext
from fashionrec.serving.server import TritonServer
from fashionrec.stages.export import category_candidate_sets
from tests.online.conftest import SALE_EVERY, ShopFiles, shop_process

NOW = dt.datetime(2026, 11, 30, 15, 33, 20, tzinfo=dt.timezone.utc).timestamp()  # a Monday afternoon, UTC
DEVICES = IngestConfig().devices  # mobile, desktop, tablet: table rows 1, 2, 3 (only mobile's is not zeros)
PUSH = 1_000.0  # mobile's row: PUSH x the pushed product's embedding, far beyond any customer's own logits
PUSHED_HOUR = 6  # the local hour whose row pushes towards the hour's product


def _local(offset_h: float, now: float = NOW) -> dt.datetime:
    """The wall clock at ``now`` in the zone ``offset_h`` hours from UTC."""
    zone = dt.timezone(dt.timedelta(hours=offset_h))
    return dt.datetime.fromtimestamp(now, zone)


# -- the check, by hand ----------------------------------------------------------------------------------------

def test_the_hour_and_weekday_are_the_local_wall_clocks_whatever_the_offset():
    tokyo = _local(9)  # 2026-12-01 00:33 there: a Tuesday, while it is Monday afternoon in UTC
    context = page_context("mobile", " JP-13 ", tokyo.isoformat(), IngestConfig(), NOW)
    assert context == PageContext("mobile", "JP-13", tokyo.isoformat(), 0, 1)
    assert context.request == RequestContext("mobile", "JP-13", 0, 1)
    naive = _local(-5).replace(tzinfo=None).isoformat()  # no offset: read as the wall clock it says
    assert page_context(None, None, naive, IngestConfig(), NOW).request == RequestContext(None, None, 10, 0)
    assert page_context(None, None, f"  {naive}  ", IngestConfig(), NOW).local_time == naive  # logged stripped


def test_blank_or_absent_is_unknown_and_unknown_sends_no_context():
    for blank in (None, "", "   "):
        assert page_context(blank, blank, blank, IngestConfig(), NOW) == NO_CONTEXT
    assert NO_CONTEXT.request is None and NO_CONTEXT.query == {}
    assert NO_CONTEXT.logged == {"device": None, "region": None, "local_time": None}
    assert page_context("tablet", "", None, IngestConfig(), NOW).request == RequestContext(device="tablet")


@pytest.mark.parametrize(("given", "parameter", "reason"), [
    ({"device": "fridge"}, "device", "bad_device"),
    ({"region": "GB\tLND"}, "region", "bad_region"),
    ({"region": "R" * (IngestConfig().max_region_length + 1)}, "region", "bad_region"),
    ({"local_time": "yesterday"}, "local_time", "bad_local_time"),
    ({"local_time": _local(15).isoformat()}, "local_time", "bad_local_time"),  # no such zone
    # 7 min 40 s from UTC: no zone is that far from a quarter-hour (the clock would be off by over 5 minutes)
    ({"device": "mobile", "region": "GB", "local_time": "2026-11-30T15:41:00"}, "local_time", "bad_local_time"),
    ({"device": "mobile\ufffd"}, "device", "bad_encoding"),
    ({"device": "m" * (CONTEXT_MAX_LENGTH + 1)}, "device", "too_long"),
])
def test_a_refused_value_names_its_parameter_and_ingests_reason(given: dict, parameter: str, reason: str):
    arguments = {"device": None, "region": None, "local_time": None, **given}
    with pytest.raises(BadContext) as refused:
        page_context(**arguments, ingest=IngestConfig(), now=NOW)
    assert (refused.value.parameter, refused.value.reason) == (parameter, reason)
    assert str(refused.value).startswith(f"{parameter} ") and "R" * 20 not in str(refused.value)  # no echo


# -- the API over the shared shop (a model without context tables) --------------------------------------------

def _active_customer(files: ShopFiles) -> str:
    counts = files.events["customer_id"].value_counts()
    return str(counts.index[len(counts) // 4])


def _pages(files: ShopFiles) -> list[tuple[str, dict[str, object]]]:
    """Every page endpoint of the /v1 API, with a visitor."""
    visitor = {"customer_id": _active_customer(files)}
    product = files.frame["product_id"].iloc[3]
    return [("/v1/homepage", visitor), ("/v1/recommendations", {**visitor, "k": 5}),
            ("/v1/categories/jeans", visitor), ("/v1/search", {**visitor, "q": "dress"}),
            (f"/v1/products/{product}", visitor)]


@pytest.mark.parametrize(("bad", "parameter", "words"), [
    ({"device": "fridge"}, "device", "device must be one of mobile, desktop, tablet"),
    ({"local_time": "yesterday"}, "local_time", "local_time must be the customer's wall-clock time now"),
    ({"region": "x" * 500}, "region", "region has 500 characters"),
])
def test_every_page_refuses_a_bad_context_with_a_422_naming_it(shop, shop_files, bad, parameter, words):
    for path, params in _pages(shop_files):
        response = httpx.get(f"{shop.url}{path}", params={**params, **bad}, timeout=10.0)
        assert response.status_code == 422, (path, response.text)
        [detail] = response.json()["detail"]
        assert detail["loc"] == ["query", parameter] and words in detail["msg"], path
        assert len(response.text) < 1_000  # never the whole input echoed


def test_every_page_answers_in_a_good_context(shop, shop_files):
    local = dt.datetime.now(dt.timezone(dt.timedelta(hours=1))).replace(microsecond=0)
    context = {"device": "mobile", "region": "GB-LND", "local_time": local.isoformat()}
    for path, params in _pages(shop_files):
        response = httpx.get(f"{shop.url}{path}", params={**params, **context}, timeout=10.0)
        assert response.status_code == 200, (path, response.text)
        blank = httpx.get(f"{shop.url}{path}", params={**params, "device": "", "local_time": " "}, timeout=10.0)
        assert blank.status_code == 200, (path, response.text)


def test_the_api_schema_documents_the_context_parameters(shop):
    schema = httpx.get(f"{shop.url}/openapi.json", timeout=10.0).json()["paths"]
    for path in ("/v1/homepage", "/v1/recommendations", "/v1/categories/{category}", "/v1/search",
                 "/v1/products/{product_id}"):
        names = {p["name"] for p in schema[path]["get"]["parameters"]}
        assert {"device", "region", "local_time"} <= names and "channel" not in names, path


def test_impressions_carry_the_pages_context(start_shop, shop_files, shop_triton):
    shop = start_shop(shop_triton.grpc_url)
    customer = _active_customer(shop_files)
    local = dt.datetime.now(dt.timezone(dt.timedelta(hours=-5))).replace(microsecond=0).isoformat()
    with_context = httpx.get(f"{shop.url}/v1/homepage", params={"customer_id": customer, "device": "tablet",
                                                                "region": "US-NY", "local_time": local}).json()
    plain = httpx.get(f"{shop.url}/v1/categories/jeans", params={"customer_id": customer}).json()
    shop.stop()  # SIGTERM: the service flushes its impressions and rolls the journal into the log
    logged = pd.read_parquet(shop.folder / "log" / "impressions")
    mine = logged[logged["request_id"] == with_context["request_id"]]
    assert len(mine) == len(with_context["carousels"])
    assert set(zip(mine["device"], mine["region"], mine["local_time"])) == {("tablet", "US-NY", local)}
    other = logged[logged["request_id"] == plain["request_id"]]
    assert len(other) == 1 and other[["device", "region", "local_time"]].isna().all().all()


# -- the context reaches Triton: a version with hand-made context tables ---------------------------------------

@dataclasses.dataclass(frozen=True)
class ContextShop:
    """A shop service over its own Triton, serving the shared shop's embeddings with hand-made context tables."""

    service: ShopService
    customer: str
    pushed: str  # mobile's product
    hour_pushed: str  # PUSHED_HOUR's product
    embeddings: dict[str, np.ndarray]
    slack: float  # how far the logits without the push can bend an order by it (in units of e . q)

    def pushed_order_holds(self, cards: list[dict]) -> bool:
        """Whether ``cards`` are ranked by the push: ``e . q`` descending, give or take :attr:`slack`."""
        along = [float(self.embeddings[self.pushed] @ self.embeddings[card["product_id"]]) for card in cards]
        return all(later <= earlier + self.slack for earlier, later in zip(along, along[1:]))


def _pushable(embeddings: np.ndarray, rows: np.ndarray) -> int:
    """Of ``rows``, the product that pushing along its own embedding puts furthest ahead of every other."""
    dots = embeddings[rows] @ embeddings.T  # [candidates, products]
    own = dots[np.arange(len(rows)), rows]
    dots[np.arange(len(rows)), rows] = -np.inf
    return int(rows[np.argmax(own - dots.max(axis=1))])


def _tables(embeddings: np.ndarray, pushed: int, hour_pushed: int) -> ContextTables:
    device = np.zeros((1 + len(DEVICES), embeddings.shape[1]), np.float32)
    device[1 + DEVICES.index("mobile")] = PUSH * embeddings[pushed]
    hour = np.zeros((1 + 24, embeddings.shape[1]), np.float32)
    hour[1 + PUSHED_HOUR] = PUSH * embeddings[hour_pushed]
    return ContextTables({"device": DEVICES}, {"device": device, "hour": hour})


@pytest.fixture(scope="module")
def context_shop(tmp_path_factory: pytest.TempPathFactory, shop_files: ShopFiles) -> Iterator[ContextShop]:
    """The shared shop's export (embeddings, aggregation, blessing) plus context tables pushing an active customer
    towards products of categories they never touched (so no context does not rank them first), published with
    the shared shop's candidate sets as version 1 of a repository of its own, served by its own Triton with the
    service in front."""
    folder = tmp_path_factory.mktemp("context-shop")
    export = Path(shop_files.model_repository).parent  # where the shared shop's export files are
    for name in ("embeddings.parquet", "aggregation.json", "blessing.json"):
        shutil.copy(export / name, folder / name)
    table = pq.read_table(folder / "embeddings.parquet").to_pydict()
    ids, embeddings = table["product_id"], np.asarray(table["embedding"], np.float32)
    customer = _active_customer(shop_files)
    mine = shop_files.events.loc[shop_files.events["customer_id"] == customer, "product_id"]
    touched = set(shop_files.frame.loc[shop_files.frame["product_id"].isin(mine), "category"])
    category = dict(zip(shop_files.frame["product_id"], shop_files.frame["category"], strict=True))
    untouched = sorted({category[p] for p in ids} - touched)
    pushed = _pushable(embeddings, np.flatnonzero([category[p] == untouched[0] for p in ids]))
    hour_pushed = _pushable(embeddings, np.flatnonzero([category[p] == untouched[1] for p in ids]))
    (folder / CONTEXT_FILE).write_text(json.dumps(_tables(embeddings, pushed, hour_pushed).to_json()))
    # Customer vectors are weighted means of embeddings, so |u . q_i - u . q_j| <= 2 max|q|^2. The widest bend is
    # similar's at alpha 0.5: (hero + u) . q + 2 prior against half the push.
    prior = np.asarray(table["popularity_prior"], np.float64)
    largest = float(np.max(np.sum(embeddings.astype(np.float64) ** 2, axis=1)))
    slack = (4 * largest + 2 * np.ptp(prior)) / PUSH
    published = publish_model_repository(str(folder / "embeddings.parquet"), str(folder / "blessing.json"),
                                         str(folder / "model_repository"), ServingConfig(),
                                         candidate_sets={"sale": ids[::SALE_EVERY],
                                                         **category_candidate_sets(shop_files.frame, ids)})
    files = dataclasses.replace(shop_files, model_repository=published.path)
    with TritonServer(published.path, ServingConfig(), http_port=0, grpc_port=0, metrics_port=0) as triton:
        service = shop_process(folder / "service", files, triton.grpc_url).start()
        try:
            yield ContextShop(service, customer, ids[pushed], ids[hour_pushed], dict(zip(ids, embeddings)), slack)
        finally:
            service.stop()


def _get(shop: ContextShop, path: str, **params: object) -> dict:
    response = httpx.get(f"{shop.service.url}{path}", params={"customer_id": shop.customer, **params}, timeout=10.0)
    assert response.status_code == 200, response.text
    return response.json()


def _ids(cards: list[dict]) -> list[str]:
    return [card["product_id"] for card in cards]


def test_a_device_moves_the_ranking_towards_its_product(context_shop):
    plain = _get(context_shop, "/v1/recommendations", k=5)
    mobile = _get(context_shop, "/v1/recommendations", k=5, device="mobile")
    assert _ids(mobile["products"])[0] == context_shop.pushed
    assert context_shop.pushed not in _ids(plain["products"])
    assert _ids(_get(context_shop, "/v1/recommendations", k=5, device="desktop")["products"]) == _ids(
        plain["products"])  # desktop's row is zeros: as without context


def test_the_local_hour_moves_the_ranking_towards_its_product(context_shop):
    utc_hour = dt.datetime.now(dt.timezone.utc).hour
    offset_h = (PUSHED_HOUR - utc_hour + 12) % 24 - 12  # the zone where it is PUSHED_HOUR now: within -12..+11
    at_hour = dt.datetime.now(dt.timezone(dt.timedelta(hours=offset_h))).replace(microsecond=0)
    other = at_hour.astimezone(dt.timezone(dt.timedelta(hours=offset_h + 1)))  # an hour later there
    pushed = _get(context_shop, "/v1/recommendations", k=5, local_time=at_hour.isoformat())
    assert at_hour.hour == PUSHED_HOUR and _ids(pushed["products"])[0] == context_shop.hour_pushed
    later = _get(context_shop, "/v1/recommendations", k=5, local_time=other.isoformat())
    assert context_shop.hour_pushed not in _ids(later["products"])


def test_the_similar_items_are_asked_in_the_context(context_shop, shop_files):
    hero = next(p for p in shop_files.frame["product_id"] if p != context_shop.pushed)
    page = _get(context_shop, f"/v1/products/{hero}", alpha=0.5, device="mobile")
    assert _ids(page["similar"]["products"])[0] == context_shop.pushed


def test_every_triton_call_of_a_page_carries_the_context(context_shop, shop_files):
    """With mobile, every ranking follows the push: each carousel of the homepage (its own Triton call), the
    category page and search results (rerank) and the similar items (similar); without, none does."""
    plain = _get(context_shop, "/v1/homepage")
    mobile = _get(context_shop, "/v1/homepage", device="mobile")
    ranked = [c for c in mobile["carousels"] if c["name"] != "trending"]  # trending asks no Triton
    assert {"for_you", "new_in", "sale"} <= {c["name"] for c in ranked}
    assert any(c["name"].startswith("category:") for c in ranked)
    for carousel in ranked:
        assert context_shop.pushed_order_holds(carousel["products"]), carousel["name"]
    for_you = next(c for c in plain["carousels"] if c["name"] == "for_you")["products"]
    assert not context_shop.pushed_order_holds(for_you)  # without the context, the customer's own order
    hero = shop_files.frame["product_id"].iloc[3]
    for path, params, cards in (("/v1/categories/jeans", {}, "products"), ("/v1/search", {"q": "dress"}, "products"),
                                (f"/v1/products/{hero}", {"alpha": 0.5}, "similar")):
        page = _get(context_shop, path, device="mobile", **params)
        shown = page[cards]["products"] if cards == "similar" else page[cards]
        scored = [card for card in shown if card["score"] is not None]  # search's weaker matches are not ranked
        assert len(scored) > 2 and context_shop.pushed_order_holds(scored), path
