"""Exploration in the real service over a real Triton: the explored slot holds a product ranked beyond the
carousel, everything else keeps its order; a shuffled carousel shows the model's top in a random order; and the
impression log carries each product's propensity and how the carousel was explored."""

from __future__ import annotations

import httpx
import pytest
import pandas as pd


def _homepage(shop, customer: str) -> dict:
    response = httpx.get(f"{shop.url}/v1/homepage", params={"customer_id": customer}, timeout=30.0)
    assert response.status_code == 200, response.text
    return response.json()


def _carousel(page: dict, name: str) -> list[str]:
    return next([p["product_id"] for p in c["products"]] for c in page["carousels"] if c["name"] == name)


def test_an_explored_slot_and_its_propensities_are_logged(start_shop, shop_files, shop_triton):
    customer = str(shop_files.events["customer_id"].value_counts().index[10])
    plain = start_shop(shop_triton.grpc_url)
    explored = start_shop(shop_triton.grpc_url, None, "online.exploration_share=1.0",
                          "online.exploration_positions=[2]", "online.exploration_pool=5")
    ranked = _carousel(_homepage(plain, customer), "for_you")  # the model's top 12, nothing explored
    page = _homepage(explored, customer)
    shown = _carousel(page, "for_you")
    assert len(shown) == len(ranked)
    assert shown[0] == ranked[0] and shown[2:] == ranked[1:-1]  # slot 2 taken, the rest moved down one
    assert shown[1] not in ranked  # drawn from the 5 ranked just beyond the carousel
    explored.stop()  # SIGTERM: impressions flushed into the log
    logged = pd.read_parquet(explored.folder / "log" / "impressions")
    mine = logged[logged["request_id"] == page["request_id"]].set_index("touchpoint")
    row = mine.loc["for_you"]
    assert row["explored_slot"] == 2
    # always explored at slot 2: the ranked products are where they must be (1), the explored one 1 in 5
    assert list(row["propensities"]) == [1.0, 0.2] + [1.0] * (len(shown) - 2)
    trending = mine.loc["trending"]  # trending order, not the model's: no policy to weigh by
    assert trending["propensities"] is None and pd.isna(trending["explored_slot"])


def test_a_shuffled_carousel_and_its_propensities_are_logged(start_shop, shop_files, shop_triton):
    """RandTop-n in the real service: the first three of *for you* in a random order, nothing else moved."""
    customer = str(shop_files.events["customer_id"].value_counts().index[10])
    plain = start_shop(shop_triton.grpc_url)
    shuffling = start_shop(shop_triton.grpc_url, None, "online.exploration_share=1.0",
                           "online.exploration_positions=[1,2,3]", "online.exploration_mode=shuffle")
    ranked = _carousel(_homepage(plain, customer), "for_you")
    page = _homepage(shuffling, customer)
    shown = _carousel(page, "for_you")
    assert sorted(shown[:3]) == sorted(ranked[:3]) and shown[3:] == ranked[3:]
    shuffling.stop()
    logged = pd.read_parquet(shuffling.folder / "log" / "impressions")
    row = logged[logged["request_id"] == page["request_id"]].set_index("touchpoint").loc["for_you"]
    assert row["shuffled_slots"] == 3 and pd.isna(row["explored_slot"])
    # always shuffled: each of the top three is at any of the first three slots one time in three
    assert list(row["propensities"]) == pytest.approx([1 / 3] * 3 + [1.0] * (len(shown) - 3))
