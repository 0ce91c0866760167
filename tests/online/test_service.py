"""The shop service end to end: `fashionrec shop serve` (uvicorn) over a REAL tritonserver, driven over HTTP.

The shop is synthetic; its embeddings are its categories plus noise, so "similar" and "favourite
category" have right answers a test can check without restating the model.
"""

from __future__ import annotations

import json

import httpx
import pandas as pd
import pytest

from fashionrec.config import IngestConfig, ShopConfig
from fashionrec.datasets import prepare_dataset
from fashionrec.stages.ingest import ingest


def _page(shop, path: str, **params) -> dict:
    response = httpx.get(f"{shop.url}{path}", params=params, timeout=10.0)
    assert response.status_code == 200, response.text
    return response.json()


def _post_events(shop, events: list[dict]) -> httpx.Response:
    body = json.dumps({"events": events})  # ASCII, with escapes: a lone surrogate goes as JSON spells it
    return httpx.post(f"{shop.url}/v1/events", content=body, headers={"content-type": "application/json"},
                      timeout=10.0)


def _shown(homepage: dict) -> list[str]:
    return [p["product_id"] for carousel in homepage["carousels"] for p in carousel["products"]]


def _active_customer(files) -> str:
    counts = files.events["customer_id"].value_counts()
    return str(counts.index[len(counts) // 4])  # active, not the most active


def test_homepage_has_each_carousel_without_repeats_or_seen_products(shop, shop_files):
    customer = _active_customer(shop_files)
    page = _page(shop, "/v1/homepage", customer_id=customer)
    names = [c["name"] for c in page["carousels"]]
    assert names[:2] == ["for_you", "new_in"] and "trending" in names and "sale" in names
    assert any(name.startswith("category:") for name in names)
    shown = _shown(page)
    assert len(shown) == len(set(shown)), "a product shows in two carousels"
    seen = set(shop_files.events.loc[shop_files.events["customer_id"] == customer, "product_id"])
    assert not seen & set(shown), "a product the customer interacted with is recommended"
    assert page["model_version"] == 1 and not any(c["fallback"] for c in page["carousels"])
    sale = {pid for pid in shop_files.frame["product_id"].iloc[::5]}
    assert {p["product_id"] for p in next(c for c in page["carousels"] if c["name"] == "sale")["products"]} <= sale


def test_favourite_category_carousel_holds_that_category(shop, shop_files):
    customer = _active_customer(shop_files)
    mine = shop_files.events[shop_files.events["customer_id"] == customer].merge(shop_files.frame, on="product_id")
    favourite = mine.groupby("category")["weight"].sum().idxmax()
    page = _page(shop, "/v1/homepage", customer_id=customer)
    carousel = next(c for c in page["carousels"] if c["name"] == f"category:{favourite}")
    assert carousel["products"] and {p["category"] for p in carousel["products"]} == {favourite}


def test_one_carousel_among_a_published_category_set(shop, shop_files):
    carousel = _page(shop, "/v1/recommendations", customer_id=_active_customer(shop_files), k=8,
                     candidate_set="category:dress")
    assert len(carousel["products"]) == 8 and {p["category"] for p in carousel["products"]} == {"dress"}
    unknown = httpx.get(f"{shop.url}/v1/recommendations", params={"customer_id": "C1", "candidate_set": "nope"})
    assert unknown.status_code == 404 and "unknown candidate set" in unknown.text


def test_a_purchase_posted_now_is_never_recommended_next(shop, shop_files):
    customer = _active_customer(shop_files)
    before = _page(shop, "/v1/homepage", customer_id=customer)
    bought = next(c for c in before["carousels"] if c["name"] == "for_you")["products"][0]["product_id"]
    receipt = _post_events(shop, [{"customer_id": customer, "product_id": bought, "event_type": "purchase"}])
    assert receipt.status_code == 200 and receipt.json() == {"accepted": 1, "rejected": []}
    after = _page(shop, "/v1/homepage", customer_id=customer)
    assert bought not in _shown(after)
    assert _shown(after) != _shown(before)


def test_an_anonymous_session_is_personalised_by_its_own_events(shop, shop_files):
    cold = _page(shop, "/v1/homepage", session_id="s-new")
    assert "for_you" not in [c["name"] for c in cold["carousels"]]  # nothing to personalise with yet
    assert (cold["personalised"], cold["history_events"]) == (False, 0)  # said, not passed off as personal
    dresses = shop_files.frame.loc[shop_files.frame["category"] == "dress", "product_id"].tolist()[:3]
    assert _post_events(shop, [{"session_id": "s-new", "product_id": p, "event_type": "click"} for p in dresses]
                        ).json()["accepted"] == 3
    warm = _page(shop, "/v1/homepage", session_id="s-new")
    assert (warm["personalised"], warm["history_events"]) == (True, 3)
    for_you = next(c for c in warm["carousels"] if c["name"] == "for_you")["products"]
    assert sum(p["category"] == "dress" for p in for_you) > len(for_you) // 2
    assert _page(shop, "/v1/homepage", session_id="another")["carousels"][0]["name"] != "for_you"


def test_category_page_is_the_category_reranked_and_paged(shop, shop_files):
    customer = _active_customer(shop_files)
    members = set(shop_files.frame.loc[shop_files.frame["category"] == "jeans", "product_id"])
    first = _page(shop, "/v1/categories/jeans", customer_id=customer, page=1, page_size=5)
    second = _page(shop, "/v1/categories/jeans", customer_id=customer, page=2, page_size=5)
    assert first["total"] == len(members)
    ids = [p["product_id"] for p in first["products"] + second["products"]]
    assert set(ids) <= members and len(set(ids)) == 10
    scores = [p["score"] for p in first["products"] + second["products"]]
    assert scores == sorted(scores, reverse=True)  # personally ordered: rerank's scores, best first


def test_search_matches_words_then_orders_personally(shop, shop_files):
    page = _page(shop, "/v1/search", q="dress", customer_id=_active_customer(shop_files), page_size=50)
    assert page["products"] and all("dress" in (p["title"] + p["description"] + p["category"]).lower()
                                    for p in page["products"])


def test_product_page_similar_items_follow_the_blend(shop, shop_files):
    hero = shop_files.frame.iloc[3]
    alone = _page(shop, f"/v1/products/{hero['product_id']}", session_id="s-product", alpha=1.0)
    assert alone["product"]["product_id"] == hero["product_id"]
    similar = alone["similar"]["products"]
    assert similar and hero["product_id"] not in [p["product_id"] for p in similar]
    assert sum(p["category"] == hero["category"] for p in similar) > len(similar) // 2


@pytest.mark.parametrize(("path", "params", "status", "words"), [
    ("/v1/products/NOPE", {"customer_id": "C1"}, 404, "unknown product"),
    ("/v1/categories/NOPE", {"customer_id": "C1"}, 404, "unknown category"),
    ("/v1/homepage", {"customer_id": "C1", "session_id": "s"}, 400, "exactly one"),
    ("/v1/homepage", {}, 400, "exactly one"),
    ("/v1/homepage", {"customer_id": "C" * 500}, 400, "characters"),
    ("/v1/search", {"q": " ", "customer_id": "C1"}, 400, "empty"),
    ("/v1/search", {"q": "x" * 500, "customer_id": "C1"}, 400, "at most"),
    ("/v1/categories/jeans", {"customer_id": "C1", "page_size": 10_000}, 422, "less than or equal"),
])
def test_bad_requests_get_specific_4xx(shop, path, params, status, words):
    response = httpx.get(f"{shop.url}{path}", params=params, timeout=10.0)
    assert response.status_code == status
    assert words in response.text and len(response.text) < 1_000  # short: never the whole input echoed


def test_events_are_checked_with_ingest_reasons(shop, shop_files):
    product = shop_files.frame["product_id"].iloc[0]
    response = _post_events(shop, [
        {"customer_id": "C-events", "product_id": product, "event_type": "click"},
        {"customer_id": "C-events", "product_id": "NOPE", "event_type": "click"},
        {"customer_id": "C-events", "product_id": product, "event_type": "like"},
        {"customer_id": "C-events", "product_id": product, "event_type": "click", "timestamp": "yesterday"},
        {"product_id": product, "event_type": "click"},
        {"customer_id": "C-\ud800", "product_id": product, "event_type": "click"},  # JSON's "\ud800": no UTF-8 text
    ])
    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "rejected": [
        {"index": 1, "reason": "unknown_product"}, {"index": 2, "reason": "unknown_event_type"},
        {"index": 3, "reason": "bad_timestamp"}, {"index": 4, "reason": "missing_field"},
        {"index": 5, "reason": "bad_encoding"}]}


def test_oversized_requests_get_413_and_the_service_carries_on(shop, shop_files):
    product = shop_files.frame["product_id"].iloc[0]
    batch = [{"customer_id": "C-big", "product_id": product, "event_type": "click", "timestamp": 1_780_000_000 + i}
             for i in range(501)]
    assert _post_events(shop, batch).status_code == 413
    huge = b'{"events": [' + b" " * 2_000_000 + b"]}"
    assert httpx.post(f"{shop.url}/v1/events", content=huge, headers={"content-type": "application/json"},
                      timeout=10.0).status_code == 413
    chunked = httpx.post(f"{shop.url}/v1/events", content=iter([huge[:600_000], huge[600_000:]]),
                         headers={"content-type": "application/json"}, timeout=10.0)
    assert chunked.status_code == 413
    assert httpx.get(f"{shop.url}/health", timeout=5.0).status_code == 200


def test_ready_runs_a_canary_through_every_touchpoint(shop):
    report = _page(shop, "/ready")
    assert report["serving"] and report["touchpoints_ok"] and not report["degraded"]
    assert report["checks"] == {"store": "ok", "recommend": "ok", "rerank": "ok", "similar": "ok"}
    assert report["model_version"] == 1


def test_metrics_count_requests_by_endpoint(shop):
    _page(shop, "/v1/categories")
    text = httpx.get(f"{shop.url}/metrics", timeout=5.0).text
    assert 'fashionrec_shop_requests_total{endpoint="/v1/categories",status="200"}' in text
    assert "fashionrec_shop_request_seconds_bucket" in text


def test_openapi_lists_the_v1_api(shop):
    paths = _page(shop, "/openapi.json")["paths"]
    assert {"/v1/homepage", "/v1/categories/{category}", "/v1/search", "/v1/products/{product_id}",
            "/v1/events"} <= set(paths)


def test_triton_down_serves_the_trending_fallback_marked(start_shop, shop_files, closed_port):
    shop = start_shop(f"127.0.0.1:{closed_port}")
    customer = _active_customer(shop_files)
    page = _page(shop, "/v1/homepage", customer_id=customer)
    by_name = {c["name"]: c for c in page["carousels"]}
    assert by_name["for_you"]["fallback"] and by_name["for_you"]["products"]
    assert not by_name["trending"]["fallback"]  # trending never asks Triton
    seen = set(shop_files.events.loc[shop_files.events["customer_id"] == customer, "product_id"])
    assert not seen & set(_shown(page))
    category = _page(shop, "/v1/categories/jeans", customer_id=customer)
    assert category["fallback"] and category["total"] > 0
    report = httpx.get(f"{shop.url}/ready", timeout=10.0)
    assert report.status_code == 200 and report.json()["degraded"]
    assert httpx.get(f"{shop.url}/ready", params={"strict": "true"}, timeout=10.0).status_code == 503
    assert 'fashionrec_shop_fallbacks_total{touchpoint="for_you"}' in httpx.get(f"{shop.url}/metrics").text


def test_acknowledged_events_survive_kill_9_and_train_the_next_run(start_shop, shop_files, shop_triton, tmp_path):
    """Every acknowledged event is in the log after a kill -9, and the pipeline's own ingest reads the log
    as a canonical dataset: events posted through the API are the next run's training data."""
    shop = start_shop(shop_triton.grpc_url)
    products = shop_files.frame["product_id"].tolist()
    posted = [{"customer_id": f"C-log-{i}", "product_id": products[i], "event_type": "add_to_bag",
               "timestamp": 1_790_000_000 + i} for i in range(40)]
    for event in posted:
        assert _post_events(shop, [event]).json()["accepted"] == 1
    shop.stop(kill=True)
    restarted = start_shop(shop_triton.grpc_url, shop.folder)  # recovers the journal it finds
    assert _page(restarted, "/v1/homepage", customer_id="C-log-3")["carousels"][0]["name"] == "for_you"
    restarted.stop()
    raw = prepare_dataset("canonical", str(shop.folder / "log"), str(tmp_path / "raw"), ShopConfig())
    ingest(raw.catalogue_uri, raw.events_uri, str(tmp_path / "ingested"), IngestConfig(holdout_fraction=0.1))
    accepted = pd.concat([pd.read_parquet(tmp_path / "ingested" / name)
                          for name in ("events_train.parquet", "events_holdout.parquet")])
    logged = accepted[accepted["customer_id"].str.startswith("C-log-")]
    assert sorted(logged["customer_id"]) == sorted(e["customer_id"] for e in posted)  # each exactly once
    assert set(logged["event_type"]) == {"add_to_bag"}


def test_a_triton_slower_than_the_budget_serves_the_fallback(start_shop, shop_files, shop_triton):
    shop = start_shop(shop_triton.grpc_url, None, "online.triton_timeout_s=0.0001")  # every call is too slow
    page = _page(shop, "/v1/homepage", customer_id=_active_customer(shop_files))
    assert {c["name"]: c["fallback"] for c in page["carousels"]}["for_you"]
    assert 'fashionrec_shop_triton_errors_total{kind="unavailable",touchpoint="for_you"}' in httpx.get(
        f"{shop.url}/metrics").text


def test_two_replicas_share_live_state_through_redis(start_shop, shop_files, shop_triton, redis_url):
    """An event posted to one replica changes the next page served by the other."""
    settings = ("online.store=redis", f"online.redis_url={redis_url}")
    first = start_shop(shop_triton.grpc_url, None, *settings)
    second = start_shop(shop_triton.grpc_url, None, *settings)
    customer = _active_customer(shop_files)
    before = _page(second, "/v1/homepage", customer_id=customer)
    bought = next(c for c in before["carousels"] if c["name"] == "for_you")["products"][0]["product_id"]
    assert _post_events(first, [{"customer_id": customer, "product_id": bought, "event_type": "purchase"}]
                        ).json()["accepted"] == 1
    assert bought not in _shown(_page(second, "/v1/homepage", customer_id=customer))


def test_every_carousel_shown_is_logged_as_an_impression(start_shop, shop_files, shop_triton):
    shop = start_shop(shop_triton.grpc_url)
    page = _page(shop, "/v1/homepage", customer_id=_active_customer(shop_files))
    shop.stop()  # SIGTERM: the service flushes its impressions and rolls the journal into the log
    logged = pd.read_parquet(shop.folder / "log" / "impressions")
    mine = logged[logged["request_id"] == page["request_id"]].set_index("touchpoint")
    assert sorted(mine.index) == sorted(c["name"] for c in page["carousels"])
    for carousel in page["carousels"]:
        row = mine.loc[carousel["name"]]
        assert list(row["product_ids"]) == [p["product_id"] for p in carousel["products"]]
        assert list(row["positions"]) == list(range(1, len(carousel["products"]) + 1))
        assert row["customer_id"] == _active_customer(shop_files) and row["model_version"] == 1
        assert not row["fallback"]


def _resident_kib(pid: int) -> int:
    status = open(f"/proc/{pid}/status").read()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))


def test_a_50_mb_body_is_refused_before_it_is_read_and_memory_stays_put(shop):
    """100 malformed batches answered 4xx, then a 50 MB body refused by its Content-Length: the service's
    resident memory stays within 10 % of where it was."""
    for i in range(100):
        assert _post_events(shop, [{"customer_id": "C-bad", "product_id": "NOPE", "event_type": "bad"}]
                            ).json()["accepted"] == 0
    before = _resident_kib(shop.process.pid)
    body = b"x" * 50_000_000
    try:
        response = httpx.post(f"{shop.url}/v1/events", content=body, timeout=30.0,
                              headers={"content-type": "application/json"})
        assert response.status_code == 413
    except httpx.TransportError:
        pass  # the service answered 413 and closed the connection while the client was still sending
    assert httpx.get(f"{shop.url}/health", timeout=5.0).status_code == 200
    assert _resident_kib(shop.process.pid) <= before * 1.10


def test_event_context_is_checked_with_ingests_rules_and_logged(start_shop, shop_files, shop_triton):
    shop = start_shop(shop_triton.grpc_url)
    customer, product = _active_customer(shop_files), shop_files.frame["product_id"].iloc[3]
    posted = _post_events(shop, [
        {"customer_id": customer, "product_id": product, "event_type": "click", "device": "mobile",
         "channel": "app", "region": "GB-LND", "local_time": "2026-12-05T19:30:00+01:00",
         "timestamp": "2026-12-05T18:30:00Z"},
        {"customer_id": customer, "product_id": product, "event_type": "add_to_bag", "device": "fridge"}])
    assert posted.json() == {"accepted": 1, "rejected": [{"index": 1, "reason": "bad_device"}]}
    shop.stop()  # SIGTERM: the journal rolled into the log
    logged = pd.read_parquet(shop.folder / "log" / "events")
    row = logged[(logged["customer_id"] == customer) & (logged["product_id"] == product)].iloc[-1]
    assert (row["device"], row["channel"], row["region"], row["local_time"]) == (
        "mobile", "app", "GB-LND", "2026-12-05T19:30:00+01:00")
