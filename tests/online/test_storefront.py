"""The storefront's pages over an in-memory :class:`Shop`: what they show, the events they post for the
visitor the cookies name, and their error pages. The real shop (Triton-backed) is tested end to end
elsewhere; this one is test data for the rendering layer."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass, field, replace

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from fashionrec.config import IngestConfig, OnlineConfig
from fashionrec.online.context import page_context
from fashionrec.online.events import Rejection
from fashionrec.online.storefront import CUSTOMER_COOKIE, SESSION_COOKIE, mount_storefront
from fashionrec.online.views import (
    BadInput,
    Carousel,
    EventReceipt,
    Homepage,
    NO_CONTEXT,
    NotFound,
    PageContext,
    ProductCard,
    ProductList,
    ProductPage,
    Visitor,
)

HOSTILE_TITLE = "<script>alert('x')</script> dress"
PRODUCTS = (
    ProductCard("P1", "Red wrap dress", "dress", "red", "Norvel", 39.0, "A wrap dress in soft crepe."),
    ProductCard("P2", "Navy wool coat", "coat", "navy", "Arikos", 129.5),
    ProductCard("P3", "White trainers", "trainers", "white", "Lumtis", 59.99),
    ProductCard("P4", "Blue slim jeans", "jeans", "blue", "Stenmar", 45.0),
    ProductCard("P5", HOSTILE_TITLE, "dress", "black", "Bel & Co", 25.0),
    ProductCard("P6", "Cream linen shirt", "shirt", "cream", "Oraven", 35.0),
)
CUSTOMERS = ["C1", "C2", "C3"]
EVENT_TYPES = {"click", "add_to_bag", "purchase"}

HOME_REQUEST, PRODUCT_REQUEST, LIST_REQUEST = ("a" * 32, "b" * 32, "c" * 32)  # request ids as the service makes them


@dataclass
class MemoryShop:
    """The Shop protocol over PRODUCTS: it records every posted event and the context every page was asked
    with, and stops recommending what the visitor bought; ``fail_triton`` marks the homepage's carousels as
    fallback. Contexts are checked as the service checks them (ingest's rules, at the clock now)."""

    products: tuple[ProductCard, ...] = PRODUCTS
    events: list[tuple[Visitor | None, dict[str, object]]] = field(default_factory=list)
    contexts: list[PageContext] = field(default_factory=list)
    fail_triton: bool = False

    def categories(self) -> list[str]:
        counts = {p.category: sum(q.category == p.category for q in self.products) for p in self.products}
        return sorted(counts, key=lambda name: (-counts[name], name))

    def example_customers(self, count: int) -> list[str]:
        return CUSTOMERS[:count]

    def devices(self) -> tuple[str, ...]:
        return IngestConfig().devices

    def context(self, device: str | None, region: str | None, local_time: str | None) -> PageContext:
        return page_context(device, region, local_time, IngestConfig(), time.time())

    async def homepage(self, visitor: Visitor, context: PageContext = NO_CONTEXT) -> Homepage:
        self.contexts.append(context)
        shown = self._unbought(visitor)
        carousels = (Carousel("for_you", "For you", shown, fallback=self.fail_triton),
                     Carousel("new_in", "New in", shown[::-1], fallback=self.fail_triton))
        return Homepage(visitor, carousels, request_id=HOME_REQUEST, model_version=7)

    async def category_page(self, visitor: Visitor, category: str, page: int, page_size: int,
                            context: PageContext = NO_CONTEXT) -> ProductList:
        self.contexts.append(context)
        matches = tuple(p for p in self._unbought(visitor) if p.category == category)
        if category not in self.categories():
            raise NotFound(f"no category {category!r}")
        return self._page(category.capitalize(), matches, page, page_size)

    async def search(self, visitor: Visitor, query: str, page: int, page_size: int,
                     context: PageContext = NO_CONTEXT) -> ProductList:
        self.contexts.append(context)
        matches = tuple(p for p in self._unbought(visitor) if query.lower() in p.title.lower())
        return self._page(f"Results for “{query}”", matches, page, page_size)

    async def product_page(self, visitor: Visitor, product_id: str, alpha: float | None = None,
                           context: PageContext = NO_CONTEXT) -> ProductPage:
        self.contexts.append(context)
        product = self._product(product_id)
        similar = tuple(p for p in self._unbought(visitor) if p.product_id != product_id)
        return ProductPage(product, Carousel("similar", "You may also like", similar), request_id=PRODUCT_REQUEST)

    async def post_events(self, visitor: Visitor | None, events: list[dict[str, object]]) -> EventReceipt:
        accepted, rejected = 0, []
        for index, event in enumerate(events):
            if event["event_type"] not in EVENT_TYPES:
                rejected.append(Rejection(index, "unknown_event_type"))
            elif event["product_id"] not in {p.product_id for p in self.products}:
                rejected.append(Rejection(index, "unknown_product"))
            else:
                self.events.append((visitor, event))
                accepted += 1
        return EventReceipt(accepted, tuple(rejected))

    def posted(self, event_type: str) -> list[tuple[Visitor | None, object]]:
        return [(visitor, event["product_id"]) for visitor, event in self.events if event["event_type"] == event_type]

    def _product(self, product_id: str) -> ProductCard:
        for product in self.products:
            if product.product_id == product_id:
                return product
        raise NotFound(f"no product {product_id!r}")

    def _unbought(self, visitor: Visitor) -> tuple[ProductCard, ...]:
        bought = {product for who, product in self.posted("purchase") if who == visitor}
        return tuple(p for p in self.products if p.product_id not in bought)

    @staticmethod
    def _page(title: str, matches: tuple[ProductCard, ...], page: int, page_size: int) -> ProductList:
        if page < 1:
            raise BadInput("page counts from 1")
        start = (page - 1) * page_size
        return ProductList(title, matches[start:start + page_size], page, page_size, len(matches), LIST_REQUEST)


CONFIG = OnlineConfig(page_size=2)


@pytest.fixture
def shop() -> MemoryShop:
    return MemoryShop()


@pytest.fixture
def client(shop: MemoryShop) -> TestClient:
    app = FastAPI()
    mount_storefront(app, shop, CONFIG)
    return TestClient(app)


def product_ids(html: str) -> list[str]:
    return re.findall(r'data-product-id="([^"]*)"', html)


def carousel(html: str, name: str) -> str:
    """The HTML of one carousel row (up to the next section's end)."""
    start = html.index(f'data-carousel="{name}"')
    return html[start:html.index("</section>", start)]


def as_customer(client: TestClient, customer: str = "C1") -> None:
    response = client.get("/as", params={"customer": customer}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/home"


def test_the_start_page_lists_customers_and_the_ways_to_browse(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for customer in CUSTOMERS:
        assert f'href="/as?customer={customer}"' in page.text
    assert 'id="choose-customer"' in page.text and 'href="/as?anonymous=1"' in page.text
    assert "Browsing anonymously" in page.text


def test_every_page_has_the_header(client: TestClient) -> None:
    page = client.get("/home").text
    assert 'class="logo"' in page and 'id="search"' in page and 'href="/" id="switch-visitor"' in page
    nav = page[page.index('id="category-nav"'):page.index("</nav>")]
    assert re.findall(r'data-category="([^"]*)"', nav) == ["dress", "coat", "jeans", "shirt", "trainers"]


def test_a_chosen_customer_sees_the_homepage_carousels(client: TestClient) -> None:
    as_customer(client)
    assert client.cookies[CUSTOMER_COOKIE] == "C1"
    page = client.get("/home")
    assert page.status_code == 200
    assert "Browsing as <strong>C1</strong>" in page.text
    assert product_ids(carousel(page.text, "for_you")) == [p.product_id for p in PRODUCTS]
    assert product_ids(carousel(page.text, "new_in"))[0] == "P6"
    assert "For you" in page.text and "£39.00" in page.text and "£129.50" in page.text
    assert "fallback" not in carousel(page.text, "for_you").lower()
    assert page.text.count("<svg") == 2 * len(PRODUCTS)


def test_fallback_carousels_say_so(client: TestClient, shop: MemoryShop) -> None:
    shop.fail_triton = True
    page = client.get("/home").text
    assert 'class="fallback-note"' in carousel(page, "for_you")


def test_viewing_a_product_posts_a_click_for_the_customer(client: TestClient, shop: MemoryShop) -> None:
    as_customer(client)
    page = client.get("/product/P1")
    assert page.status_code == 200
    assert shop.posted("click") == [(Visitor(customer_id="C1"), "P1")]
    for text in ("Red wrap dress", "Norvel", "red", "£39.00", "A wrap dress in soft crepe.",
                 'id="add-to-bag"', 'id="buy-now"'):
        assert text in page.text
    assert "P1" not in product_ids(carousel(page.text, "similar"))
    assert 'id="confirmation"' not in page.text


def test_a_click_from_a_page_carries_that_pages_request_id_for_attribution(client: TestClient, shop: MemoryShop) -> None:
    as_customer(client)
    home = client.get("/home").text
    assert f'href="/product/P1?ref={HOME_REQUEST}"' in home
    assert f"?ref={LIST_REQUEST}" in client.get("/category/dress").text
    assert client.get("/product/P1", params={"ref": HOME_REQUEST}).status_code == 200
    assert f"?ref={PRODUCT_REQUEST}" in client.get("/product/P2").text  # similar items link back to their page
    client.get("/product/P3", params={"ref": "not-ours<script>"})  # not a request id of ours: unattributed
    clicks = [event for _, event in shop.events if event["event_type"] == "click"]
    assert [c.get("request_id") for c in clicks] == [HOME_REQUEST, None, None]


def test_add_to_bag_posts_the_event_and_confirms_on_the_product_page(client: TestClient, shop: MemoryShop) -> None:
    as_customer(client)
    response = client.post("/bag", data={"product_id": "P2"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/product/P2?added=bag"
    assert shop.posted("add_to_bag") == [(Visitor(customer_id="C1"), "P2")]
    page = client.get(response.headers["location"])
    assert 'id="confirmation"' in page.text and "Added to your bag." in page.text


def test_a_purchase_is_confirmed_and_no_longer_recommended(client: TestClient, shop: MemoryShop) -> None:
    as_customer(client)
    page = client.post("/buy", data={"product_id": "P3"})  # follows the redirect
    assert page.status_code == 200 and "Thank you for your order!" in page.text
    assert shop.posted("purchase") == [(Visitor(customer_id="C1"), "P3")]
    assert "P3" not in product_ids(carousel(client.get("/home").text, "for_you"))


def test_buying_an_unknown_product_or_none_is_an_error_page(client: TestClient) -> None:
    assert client.post("/buy", data={"product_id": "P404"}).status_code == 404
    missing = client.post("/bag", data={})
    assert missing.status_code == 400 and "The form named no product." in missing.text


def test_an_anonymous_visitor_gets_a_session_and_its_events_carry_it(client: TestClient, shop: MemoryShop) -> None:
    client.get("/")
    session = client.cookies[SESSION_COOKIE]
    assert re.fullmatch(r"[0-9a-f]{32}", session)
    client.get("/product/P4")
    client.post("/bag", data={"product_id": "P4"})
    assert client.cookies[SESSION_COOKIE] == session  # kept, not renewed on every page
    assert {visitor for visitor, _ in shop.events} == {Visitor(session_id=session)}
    assert [event["event_type"] for _, event in shop.events] == ["click", "add_to_bag", "click"]


def test_switching_to_anonymous_forgets_the_customer_but_keeps_the_session(client: TestClient,
                                                                         shop: MemoryShop) -> None:
    client.get("/")
    session = client.cookies[SESSION_COOKIE]
    as_customer(client)
    response = client.get("/as", params={"anonymous": "1"}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/home"
    assert CUSTOMER_COOKIE not in client.cookies
    client.get("/product/P1")
    assert shop.posted("click") == [(Visitor(session_id=session), "P1")]


def test_a_malformed_session_cookie_is_replaced(client: TestClient, shop: MemoryShop) -> None:
    client.cookies.set(SESSION_COOKIE, "not-a-session")
    client.get("/product/P1")
    [(visitor, _)] = shop.events
    assert visitor.session_id != "not-a-session" and re.fullmatch(r"[0-9a-f]{32}", visitor.session_id)


def test_any_printable_customer_id_survives_the_cookie(client: TestClient, shop: MemoryShop) -> None:
    customer = 'Zoë "C; 1"/客户'
    as_customer(client, customer)
    client.get("/product/P1")
    assert shop.posted("click") == [(Visitor(customer_id=customer), "P1")]


def test_product_ids_with_any_characters_round_trip_through_links_and_forms() -> None:
    odd = ProductCard("SKU 7/ä?&", "Odd one", "bag", "brown", "Kotis", 80.0)
    shop = MemoryShop(products=(*PRODUCTS, odd))
    app = FastAPI()
    mount_storefront(app, shop, CONFIG)
    client = TestClient(app)
    assert f'href="/product/SKU%207%2F%C3%A4%3F%26?ref={LIST_REQUEST}"' in client.get("/category/bag").text
    page = client.post("/bag", data={"product_id": odd.product_id})
    assert page.status_code == 200 and "Odd one" in page.text and "Added to your bag." in page.text
    assert [product for _, product in shop.posted("add_to_bag")] == [odd.product_id]


def test_a_blank_or_overlong_customer_id_is_refused(client: TestClient) -> None:
    assert client.get("/as", params={"customer": "  "}).status_code == 400
    assert client.get("/as", params={"customer": "C" * (CONFIG.max_id_length + 1)}).status_code == 400
    assert CUSTOMER_COOKIE not in client.cookies


def test_category_pages_are_paged(client: TestClient) -> None:
    first = client.get("/category/dress")
    assert first.status_code == 200 and product_ids(first.text) == ["P1", "P5"]
    assert 'id="next-page"' not in first.text and 'id="prev-page"' not in first.text
    many = MemoryShop(products=tuple(replace(p, category="dress") for p in PRODUCTS))
    app = FastAPI()
    mount_storefront(app, many, CONFIG)
    paged = TestClient(app)
    page_one, page_two = paged.get("/category/dress").text, paged.get("/category/dress?page=2").text
    assert 'href="/category/dress?page=2"' in page_one and 'id="prev-page"' not in page_one
    assert 'href="/category/dress?page=1"' in page_two and 'href="/category/dress?page=3"' in page_two
    assert "3–4 of 6 products" in page_two


def test_search_finds_products_and_keeps_the_query_in_the_box(client: TestClient) -> None:
    page = client.get("/search", params={"q": "navy"})
    assert page.status_code == 200 and product_ids(page.text) == ["P2"]
    assert 'value="navy"' in page.text


@pytest.mark.parametrize("url, status, message", [
    ("/product/P404", 404, "no product &#39;P404&#39;"),
    ("/category/hats", 404, "no category &#39;hats&#39;"),
    ("/search?q=", 400, "Type something to search for."),
    ("/search?q=" + "a" * (CONFIG.max_query_length + 1), 400,
     f"Search text is limited to {CONFIG.max_query_length} characters"),
    ("/category/dress?page=0", 400, "The page number must be a whole number"),
    ("/search?q=dress&page=two", 400, "The page number must be a whole number"),
])
def test_errors_render_a_page_with_the_message(client: TestClient, url: str, status: int, message: str) -> None:
    page = client.get(url)
    assert page.status_code == status and page.headers["content-type"].startswith("text/html")
    assert 'id="error"' in page.text and message in page.text
    assert 'id="search"' in page.text  # the header is there, so the visitor can carry on


def test_error_messages_are_escaped(client: TestClient) -> None:
    page = client.get("/product/<b>x</b>")
    assert page.status_code == 404 and "<b>x</b>" not in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text


def test_a_hostile_title_is_escaped_everywhere(client: TestClient) -> None:
    pages = [client.get(url).text for url in ("/home", "/category/dress", "/search?q=script", "/product/P5",
                                              "/search?q=<script>")]
    for page in pages:
        assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; dress" in pages[-2]


def test_the_stylesheet_is_served(client: TestClient) -> None:
    css = client.get("/static/shop.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".carousel-row" in css.text
    assert 'href="/static/shop.css"' in client.get("/").text


def test_personal_pages_are_not_cached_by_shared_caches(client: TestClient) -> None:
    assert client.get("/home").headers["cache-control"] == "private, no-store"


def _local_now(hours: int) -> dt.datetime:
    """The wall clock now in a time zone ``hours`` from UTC."""
    return dt.datetime.now(dt.timezone(dt.timedelta(hours=hours))).replace(microsecond=0)


def test_the_start_page_offers_a_device_and_its_links_carry_the_choice(client: TestClient) -> None:
    plain = client.get("/").text
    assert 'id="choose-device"' in plain and '<option value="" selected' not in plain
    assert [f'<option value="{d}">' in plain for d in ("mobile", "desktop", "tablet")] == [True] * 3
    page = client.get("/", params={"device": "mobile", "region": "GB-LND"}).text
    assert '<option value="mobile" selected>' in page
    assert 'href="/as?customer=C1&amp;device=mobile&amp;region=GB-LND"' in page
    assert 'href="/as?anonymous=1&amp;device=mobile&amp;region=GB-LND"' in page
    chooser = page[page.index('id="choose-device"'):page.index("</form>", page.index('id="choose-device"'))]
    assert 'name="region" value="GB-LND"' in chooser and 'type="hidden" name="device"' not in chooser  # the select asks
    customer = page[page.index('id="choose-customer"'):page.index("</form>", page.index('id="choose-customer"'))]
    assert 'name="device" value="mobile"' in customer and 'name="region" value="GB-LND"' in customer
    response = client.get("/as", params={"customer": "C1", "device": "mobile", "region": "GB-LND"},
                          follow_redirects=False)
    assert response.headers["location"] == "/home?device=mobile&region=GB-LND"


def test_pages_are_asked_in_the_querys_context_and_carry_device_and_region_on(client: TestClient,
                                                                             shop: MemoryShop) -> None:
    """Every page asks the shop with the context; links, forms and redirects keep the device and region but not
    the local time (one request's wall clock, stale on the next page); the page's events carry its context."""
    as_customer(client)
    local = _local_now(1)
    context = {"device": "mobile", "region": "GB-LND", "local_time": local.isoformat()}
    home = client.get("/home", params=context).text
    assert shop.contexts[-1] == PageContext("mobile", "GB-LND", local.isoformat(), local.hour, local.weekday())
    assert 'on <strong>mobile</strong>' in home and 'data-device="mobile"' in home
    carried = "device=mobile&amp;region=GB-LND"
    assert f'href="/product/P1?ref={HOME_REQUEST}&amp;{carried}"' in home
    assert f'class="logo" href="/home?{carried}"' in home and f'href="/category/dress?{carried}"' in home
    assert f'href="/?{carried}" id="switch-visitor"' in home and "local_time" not in home
    search = home[home.index('id="search"'):home.index("</form>", home.index('id="search"'))]
    assert 'name="device" value="mobile"' in search and 'name="region" value="GB-LND"' in search
    product = client.get("/product/P1", params=context).text
    assert f'action="/bag?{carried}"' in product and f'href="/category/dress?{carried}"' in product
    bagged = client.post("/bag?device=mobile&region=GB-LND", data={"product_id": "P1"}, follow_redirects=False)
    assert bagged.headers["location"] == "/product/P1?added=bag&device=mobile&region=GB-LND"
    click, bag = (event for _, event in shop.events)
    assert (click["device"], click["region"], click["local_time"]) == ("mobile", "GB-LND", local.isoformat())
    assert (bag["device"], bag["region"], "local_time" in bag) == ("mobile", "GB-LND", False)
    client.get("/search", params={"q": "dress", "device": "tablet"})
    assert shop.contexts[-1] == PageContext(device="tablet")


def test_paging_links_carry_the_context_on() -> None:
    many = MemoryShop(products=tuple(replace(p, category="dress") for p in PRODUCTS))
    app = FastAPI()
    mount_storefront(app, many, CONFIG)
    page = TestClient(app).get("/category/dress", params={"device": "desktop"}).text
    assert 'href="/category/dress?page=2&amp;device=desktop"' in page


@pytest.mark.parametrize("query, parameter, rule", [
    ({"device": "fridge"}, "device", "device must be one of mobile, desktop, tablet"),
    ({"device": "mobile", "local_time": "yesterday"}, "local_time", "local_time must be the customer&#39;s wall-clock"),
    ({"region": "R" * 65}, "region", "region must be a region code or name of at most 64"),
])
def test_a_refused_context_renders_a_422_page_naming_it(client: TestClient, shop: MemoryShop, query: dict,
                                                      parameter: str, rule: str) -> None:
    page = client.get("/home", params=query)
    assert page.status_code == 422 and 'id="error"' in page.text and rule in page.text
    assert 'class="logo" href="/home"' in page.text  # its links carry no refused context
    assert shop.contexts == []  # no page was asked for


def test_a_blank_context_is_unknown(client: TestClient, shop: MemoryShop) -> None:
    page = client.get("/home", params={"device": " ", "region": "", "local_time": ""})
    assert page.status_code == 200 and shop.contexts == [NO_CONTEXT]
    assert 'class="logo" href="/home"' in page.text


def test_the_storefront_stays_out_of_the_api_schema(client: TestClient) -> None:
    assert client.get("/openapi.json").json()["paths"] == {}
