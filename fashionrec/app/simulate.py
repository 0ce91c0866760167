"""The shop simulator (``fashionrec simulate``): the embedded shop's customers visit a RUNNING shop service.

Why: the offline metrics judge a model on a log that an older model (or none) shaped; what a shop wants to
know is how customers react to the pages the served model builds. The embedded synthetic shop knows each
customer's TRUE taste (:class:`fashionrec.datasets.synthetic.SyntheticShop`), so simulated customers can
react to exactly what the service shows them, over HTTP, through the same API a storefront uses; every
click, bag and purchase goes through the event API into the service's event log, where the next training
run, the online report and the live state (the next page) find it, as they would a real customer's.

Behaviour (settings: :class:`fashionrec.config.SimulationConfig`). Each simulated day ``visitors_per_day``
customers (seeded draw) make one session each: the homepage, sometimes their favourite category's page (by
taste) or a search for a word of their style, and a product page for each product they click, whose
*similar* carousel they examine too. Slot p (1-based) of a carousel or list is looked at with probability
``examination_decay ** (p - 1)``; a looked-at product is clicked with
``sigmoid(click_sharpness * (affinity - click_threshold))``, affinity = true taste . product latent. A click
posts ``click``; then ``add_to_bag`` with ``bag_base * keenness(affinity)``, and given the bag ``purchase``
with ``purchase_base * keenness(affinity) * exp(-price_sensitivity * price / 100)``. Every event names the
``request_id`` of the page that showed the product, so it is attributed to that impression.

The simulated days group the visits (one line is printed per day); the clock is the service's own: events
carry no timestamp and are stamped "now" by the service.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from fashionrec.config import ShopConfig, SimulationConfig
from fashionrec.datasets.synthetic import SyntheticShop, generate_shop

REQUEST_TIMEOUT_S = 30.0  # per request: a page slower than this counts as an error ("timeout"), not a hang
KEENNESS_SLOPE, KEENNESS_MIDPOINT = 4.0, 0.5  # the synthetic log's own keenness curve (datasets.synthetic)


class ShopMismatch(ValueError):
    """The running service's catalogue is not the one the given ShopConfig generates."""


class NewProductsUnsupported(ValueError):
    """``new_products_per_day`` > 0: the running service cannot take new products without a restart."""


# -- the behaviour model: pure functions, unit-tested with hand-computed probabilities ------------------------

def sigmoid(x: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def click_chances(affinity: Sequence[float] | np.ndarray, simulation: SimulationConfig) -> np.ndarray:
    """P(click) of each slot of one carousel or list, in page order: looked at (``decay ** (p - 1)``) and then
    clicked (sigmoid of the affinity). A product without a known affinity (NaN) is never clicked."""
    affinity = np.asarray(affinity, dtype=np.float64)
    looked = simulation.examination_decay ** np.arange(len(affinity))
    clicked = sigmoid(simulation.click_sharpness * (affinity - simulation.click_threshold))
    return np.where(np.isnan(affinity), 0.0, looked * clicked)


def keenness(affinity: float) -> float:
    """How keen a customer is on a product they clicked: the synthetic log's curve, so that the simulated shop
    bags and buys like the log the model was trained on (0.5 at affinity 0.5, near 1 above 1.5)."""
    return float(sigmoid(KEENNESS_SLOPE * (affinity - KEENNESS_MIDPOINT)))


def bag_chance(affinity: float, simulation: SimulationConfig) -> float:
    """P(add to bag | click)."""
    return simulation.bag_base * keenness(affinity)


def purchase_chance(affinity: float, price: float, simulation: SimulationConfig) -> float:
    """P(purchase | in the bag): keener customers buy, dearer products less so (per 100 of the currency)."""
    return simulation.purchase_base * keenness(affinity) * float(np.exp(-simulation.price_sensitivity * price / 100.0))


def draw_clicks(rng: np.random.Generator, affinity: Sequence[float] | np.ndarray,
                simulation: SimulationConfig) -> list[int]:
    """The slots (0-based) clicked on one carousel or list: one uniform draw per slot."""
    chances = click_chances(affinity, simulation)
    return np.flatnonzero(rng.random(len(chances)) < chances).tolist()


# -- the ground truth --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GroundTruth:
    """What the simulated customers know of themselves and of the products: the synthetic shop's latent
    world, looked up by the ids the service shows."""

    shop: SyntheticShop
    product_row: dict[str, int]  # product id -> row of product_latent
    category_codes: np.ndarray  # each product's category, as an index into categories
    categories: tuple[str, ...]

    @classmethod
    def generate(cls, shop_config: ShopConfig) -> GroundTruth:
        """Regenerate the shop the service's catalogue came from (no event log: only the tastes are needed)."""
        shop = generate_shop(shop_config, with_events=False)
        categories, codes = np.unique(shop.catalogue["category"].to_numpy(dtype=str), return_inverse=True)
        return cls(shop, {pid: row for row, pid in enumerate(shop.catalogue["product_id"])}, codes,
                   tuple(categories.tolist()))

    @property
    def num_customers(self) -> int:
        return len(self.shop.customer_tastes)

    def customer_id(self, customer: int) -> str:
        return f"C{customer:06d}"  # datasets.synthetic's ids

    def affinities(self, customer: int) -> np.ndarray:
        """The customer's true affinity to every product, in catalogue order."""
        return self.shop.product_latent @ self.shop.customer_tastes[customer]

    def favourite_category(self, affinity: np.ndarray) -> str:
        """The category whose products the customer likes best on average (their taste, not their history)."""
        totals = np.bincount(self.category_codes, weights=affinity, minlength=len(self.categories))
        counts = np.bincount(self.category_codes, minlength=len(self.categories))
        return self.categories[int(np.argmax(totals / np.maximum(counts, 1)))]

    def style_words(self, customer: int) -> tuple[str, ...]:
        return self.shop.style_words[int(self.shop.customer_styles[customer])]

    def category_sizes(self) -> dict[str, int]:
        return dict(zip(self.categories, np.bincount(self.category_codes).tolist(), strict=True))


# -- what happened ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulationSummary:
    """A run's totals. ``page_requests`` and ``event_requests``: requests sent; ``pages``: answered page requests
    by kind (homepage, category, search, product); ``events``: accepted events by type; ``rejected``: refused
    events by the service's reason; ``errors``: requests (pages and posts) without a 2xx answer, by status code
    or transport error ("timeout", "ConnectError");
    ``fallbacks``: carousels and lists the service marked as the trending fallback; ``shown``: product slots
    shown on carousels and lists; ``unknown_products``: shown products the ground truth does not know."""

    days: int
    visits: int
    page_requests: int
    pages: Mapping[str, int]
    event_requests: int
    events: Mapping[str, int]
    rejected: Mapping[str, int]
    errors: Mapping[str, int]
    fallbacks: int
    shown: int
    unknown_products: int
    seconds: float

    @property
    def requests(self) -> int:
        """Every request sent: pages and event posts, answered or not."""
        return self.page_requests + self.event_requests

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def visits_per_second(self) -> float:
        return self.visits / self.seconds if self.seconds > 0 else 0.0

    @property
    def click_through_rate(self) -> float:
        """Clicks per product shown."""
        return self.events.get("click", 0) / self.shown if self.shown else 0.0


@dataclass
class _Tally:
    """Counters a day's visits add to (one event loop: no locks)."""

    visits: int = 0
    page_requests: int = 0
    pages: Counter = field(default_factory=Counter)
    event_requests: int = 0
    events: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    fallbacks: int = 0
    shown: int = 0
    unknown_products: int = 0

    def add(self, other: _Tally) -> None:
        self.visits += other.visits
        self.page_requests += other.page_requests
        self.event_requests += other.event_requests
        self.fallbacks += other.fallbacks
        self.shown += other.shown
        self.unknown_products += other.unknown_products
        for name in ("pages", "events", "rejected", "errors"):
            getattr(self, name).update(getattr(other, name))

    def summary(self, days: int, seconds: float) -> SimulationSummary:
        return SimulationSummary(days, self.visits, self.page_requests, dict(self.pages), self.event_requests,
                                 dict(self.events), dict(self.rejected), dict(self.errors), self.fallbacks, self.shown,
                                 self.unknown_products, seconds)


def day_line(day: int, days: int, summary: SimulationSummary) -> str:
    """One printed line per simulated day: traffic, events, CTR, throughput and anything that went wrong."""
    events = ", ".join(f"{summary.events.get(kind, 0)} {kind}" for kind in ("click", "add_to_bag", "purchase"))
    problems = [f"errors {dict(sorted(summary.errors.items()))}" if summary.errors else "",
                f"rejected {dict(sorted(summary.rejected.items()))}" if summary.rejected else "",
                f"{summary.fallbacks} fallbacks" if summary.fallbacks else "",
                f"{summary.unknown_products} unknown products shown" if summary.unknown_products else ""]
    return (f"day {day}/{days}: {summary.visits} visits, {sum(summary.pages.values())} pages, {events}; "
            f"CTR {summary.click_through_rate:.2%}; {summary.visits_per_second:.1f} visits/s, "
            f"{summary.requests_per_second:.1f} requests/s" + "".join(f"; {p}" for p in problems if p))


# -- one visit ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shown:
    """A product on a page: what the customer reacts to, and the page that showed it (attribution)."""

    product_id: str
    price: float
    request_id: str


class _Visit:
    """One customer's session: pages in the order a shopper meets them; each click is followed at once (its
    event, its product page, that page's similar items, the bag and the purchase), depth first."""

    def __init__(self, client: httpx.AsyncClient, truth: GroundTruth, simulation: SimulationConfig,
                 customer: int, rng: np.random.Generator, tally: _Tally) -> None:
        self.client, self.truth, self.simulation, self.rng, self.tally = client, truth, simulation, rng, tally
        self.customer, self.customer_id = customer, truth.customer_id(customer)
        self.affinity = truth.affinities(customer)
        self.clicked: set[str] = set()  # once per session: a second click would be a duplicate event
        self.product_pages = 0

    async def run(self) -> None:
        self.tally.visits += 1
        homepage = await self._get("homepage", "/v1/homepage")
        if homepage is None:
            return  # no page, no session: the error is counted
        for carousel in homepage["carousels"]:
            await self._examine(carousel["products"], homepage["request_id"], carousel.get("fallback", False))
        if self.rng.random() < self.simulation.category_page_share:
            category = quote(self.truth.favourite_category(self.affinity), safe="")
            await self._list_page("category", f"/v1/categories/{category}")
        if self.rng.random() < self.simulation.search_share:
            await self._list_page("search", "/v1/search", q=str(self.rng.choice(self.truth.style_words(self.customer))))

    async def _list_page(self, kind: str, path: str, **params: str) -> None:
        page = await self._get(kind, path, **params)
        if page is not None:
            await self._examine(page["products"], page["request_id"], page.get("fallback", False))

    async def _examine(self, products: Sequence[Mapping[str, Any]], request_id: str, fallback: bool) -> None:
        """Look along one carousel or list and follow what catches the eye."""
        self.tally.shown += len(products)
        self.tally.fallbacks += bool(fallback)
        rows = [self.truth.product_row.get(p["product_id"]) for p in products]
        self.tally.unknown_products += sum(row is None for row in rows)
        affinity = [np.nan if row is None else float(self.affinity[row]) for row in rows]
        for slot in draw_clicks(self.rng, affinity, self.simulation):
            product = products[slot]
            if product["product_id"] in self.clicked or self.product_pages >= self.simulation.max_product_pages:
                continue
            await self._follow(_Shown(product["product_id"], float(product["price"]), request_id), affinity[slot])

    async def _follow(self, shown: _Shown, affinity: float) -> None:
        """A click: its event first (so the product page already knows it), the page, then bag and purchase."""
        self.clicked.add(shown.product_id)
        self.product_pages += 1
        await self._post([self._event(shown, "click")])
        page = await self._get("product", f"/v1/products/{shown.product_id}")
        if page is not None:
            similar = page["similar"]
            await self._examine(similar["products"], page["request_id"], similar.get("fallback", False))
        if self.rng.random() >= bag_chance(affinity, self.simulation):
            return
        then = [self._event(shown, "add_to_bag")]
        if self.rng.random() < purchase_chance(affinity, shown.price, self.simulation):
            then.append(self._event(shown, "purchase"))
        await self._post(then)

    def _event(self, shown: _Shown, event_type: str) -> dict[str, str]:
        return {"customer_id": self.customer_id, "product_id": shown.product_id, "event_type": event_type,
                "request_id": shown.request_id}

    async def _get(self, kind: str, path: str, **params: str) -> dict[str, Any] | None:
        """A page's JSON, or None when it did not come (counted by status or error: a finding, not a crash)."""
        self.tally.page_requests += 1
        answer = await _request(self.client, self.tally, "GET", path,
                                params={"customer_id": self.customer_id, **params})
        if answer is not None:
            self.tally.pages[kind] += 1
        return answer

    async def _post(self, events: list[dict[str, str]]) -> None:
        """Post events; count the accepted ones by type and the refused ones by the service's reason."""
        self.tally.event_requests += 1
        receipt = await _request(self.client, self.tally, "POST", "/v1/events", json={"events": events})
        if receipt is None:
            return
        refused = {int(r["index"]): str(r["reason"]) for r in receipt.get("rejected", ())}
        self.tally.rejected.update(refused.values())
        self.tally.events.update(e["event_type"] for i, e in enumerate(events) if i not in refused)


async def _request(client: httpx.AsyncClient, tally: _Tally, method: str, path: str,
                   **options: Any) -> dict[str, Any] | None:
    """The JSON of a 2xx answer; anything else is counted in ``tally.errors`` and answered with None."""
    try:
        response = await client.request(method, path, **options)
    except httpx.TimeoutException:
        tally.errors["timeout"] += 1
        return None
    except httpx.HTTPError as error:  # refused, reset: the service is down or restarting
        tally.errors[type(error).__name__] += 1
        return None
    if not response.is_success:
        tally.errors[str(response.status_code)] += 1
        return None
    return response.json()


# -- the driver -----------------------------------------------------------------------------------------------

def visitors(truth: GroundTruth, simulation: SimulationConfig, day: int) -> list[int]:
    """The day's visitors (customer rows): distinct customers when the shop has enough, seeded by the day."""
    rng = np.random.default_rng((simulation.seed, day))
    count, population = simulation.visitors_per_day, truth.num_customers
    return rng.choice(population, size=count, replace=count > population).tolist()


async def _day(client: httpx.AsyncClient, truth: GroundTruth, simulation: SimulationConfig, day: int) -> _Tally:
    """Every visit of one day, ``concurrency`` in flight; each visit draws from its own seeded generator, so
    the choices do not depend on which visit's answer came first."""
    tally = _Tally()
    todo: Iterator[tuple[int, int]] = iter(enumerate(visitors(truth, simulation, day)))

    async def worker() -> None:
        for index, customer in todo:  # shared: each worker takes the next visit when it is free
            rng = np.random.default_rng((simulation.seed, day, index))
            await _Visit(client, truth, simulation, customer, rng, tally).run()

    await asyncio.gather(*(worker() for _ in range(simulation.concurrency)))
    return tally


async def check_catalogue(client: httpx.AsyncClient, truth: GroundTruth) -> None:
    """Refuse to simulate against a service whose catalogue another ShopConfig made: every affinity would be
    wrong. Categories and their sizes are compared (``/v1/categories``: no Triton call, no impression)."""
    response = await client.get("/v1/categories")
    response.raise_for_status()
    served = {c["name"]: int(c["products"]) for c in response.json()["categories"]}
    expected = truth.category_sizes()
    if served != expected:
        differing = sorted(name for name in served.keys() | expected.keys() if served.get(name) != expected.get(name))
        raise ShopMismatch(f"the service's catalogue is not the one this shop config generates (products per "
                           f"category differ in {', '.join(differing[:5])}): give the --size / --set shop.* the "
                           "service's catalogue was made with")


async def simulate(base_url: str, shop_config: ShopConfig, simulation: SimulationConfig,
                   echo: Callable[[str], None] = print,
                   transport: httpx.AsyncBaseTransport | None = None) -> SimulationSummary:
    """The async core: ``simulation.days`` days of visits to the service at ``base_url``, a line per day.
    ``transport``: httpx's (default: the network), e.g. ``httpx.ASGITransport`` for a service in this process."""
    if simulation.new_products_per_day:
        raise NewProductsUnsupported(
            "simulation.new_products_per_day must be 0: the shop service loads its catalogue once at start, so "
            "products added to the served model (`fashionrec catalogue add`) cannot be shown or logged until it "
            "restarts")
    truth = GroundTruth.generate(shop_config)
    limits = httpx.Limits(max_connections=simulation.concurrency, max_keepalive_connections=simulation.concurrency)
    total = _Tally()
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits,
                                 transport=transport) as client:
        await check_catalogue(client, truth)
        started = time.perf_counter()
        for day in range(1, simulation.days + 1):
            day_started = time.perf_counter()
            tally = await _day(client, truth, simulation, day)
            echo(day_line(day, simulation.days, tally.summary(1, time.perf_counter() - day_started)))
            total.add(tally)
        return total.summary(simulation.days, time.perf_counter() - started)


def run_simulation(base_url: str, shop_config: ShopConfig, simulation: SimulationConfig,
                   echo: Callable[[str], None] = print) -> SimulationSummary:
    """:func:`simulate`, for callers without an event loop (the CLI, benchmarks, tests)."""
    return asyncio.run(simulate(base_url.rstrip("/"), shop_config, simulation, echo))
