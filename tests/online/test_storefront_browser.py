"""The storefront in a real headless Chromium (Playwright driving Debian's chromium) over the real service.

A customer opens the homepage, clicks a recommended product, adds it to the bag, goes back: the homepage
has changed and the product is not recommended again. A device picked on the start page stays with every
page after it. Screenshots of each step are kept in ``test-artifacts/storefront/`` (or
``$FASHIONREC_TEST_ARTIFACTS``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by `make test` (Playwright's own download needs the internet)
ARTIFACTS = Path(os.environ.get("FASHIONREC_TEST_ARTIFACTS", "test-artifacts")) / "storefront"
CARDS = "[data-carousel] [data-product-id]"


@pytest.fixture
def browser_page():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page
        browser.close()


def _recommended(page) -> list[str]:
    return page.locator(CARDS).evaluate_all("cards => cards.map(card => card.dataset.productId)")


def test_add_to_bag_changes_the_homepage_and_the_product_is_not_recommended_again(shop, shop_files, browser_page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser_page
    counts = shop_files.events["customer_id"].value_counts()
    customer = str(counts.index[len(counts) // 3])
    page.goto(f"{shop.url}/")
    page.screenshot(path=str(ARTIFACTS / "1-start.png"))
    page.goto(f"{shop.url}/as?customer={customer}")
    assert page.url.endswith("/home")
    before = _recommended(page)
    assert before and page.locator('[data-carousel="for_you"] [data-product-id]').count() > 0
    page.screenshot(path=str(ARTIFACTS / "2-home-before.png"), full_page=True)

    first = page.locator('[data-carousel="for_you"] [data-product-id]').first
    chosen = first.get_attribute("data-product-id")
    first.click()
    path, _, query = page.url.partition("?")
    assert path.endswith(f"/product/{chosen}") and re.fullmatch(r"ref=[0-9a-f]{32}", query)  # the click's page
    page.screenshot(path=str(ARTIFACTS / "3-product.png"), full_page=True)
    page.locator("#add-to-bag").click()
    assert page.locator("#confirmation").is_visible()
    page.screenshot(path=str(ARTIFACTS / "4-added-to-bag.png"), full_page=True)

    page.goto(f"{shop.url}/home")  # back to the homepage
    after = _recommended(page)
    page.screenshot(path=str(ARTIFACTS / "5-home-after.png"), full_page=True)
    assert chosen not in after
    assert after != before


def test_a_device_picked_on_the_start_page_stays_with_the_browsing_session(shop, browser_page):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser_page
    page.goto(f"{shop.url}/")
    page.select_option("#device", "mobile")
    page.locator("#choose-device button").click()
    assert page.url.endswith("/?device=mobile")
    page.locator("#example-customers [data-customer-id]").first.click()
    assert page.url.endswith("/home?device=mobile") and page.locator('#visitor[data-device="mobile"]').count() == 1
    page.locator(CARDS).first.click()
    assert re.fullmatch(r".*/product/[^?]+\?ref=[0-9a-f]{32}&device=mobile", page.url)  # the click's page, on mobile
    page.locator("#add-to-bag").click()
    assert page.url.endswith("?added=bag&device=mobile") and page.locator("#confirmation").is_visible()
    page.screenshot(path=str(ARTIFACTS / "6-on-mobile.png"), full_page=True)
