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
``request_id`` of the page that showed the product, so it is attributed to that impression. In a shop with
context (``shop.context_strength`` > 0) each visit has a device, the customer's region and their local time
(:class:`VisitContext`), sent with every page request and event of the visit; other shops send none.

The simulated days group the visits (one line is printed per day); the clock is the service's own: events
carry no timestamp and are stamped "now" by the service.

Launches. With ``new_products_per_day`` = N > 0 and a :class:`Launcher` (the service's model repository, and
the Triton to load versions into), each day after the first starts with N new products of the same shop
(:func:`fashionrec.datasets.synthetic.launch_products`: the shop's latent world, so their content predicts
their latent) added to the served version (:func:`fashionrec.repository.catalogue.add_products`); their
latents join the ground truth, so visitors react to them like to any product, and the day's visits wait
until the service shows them (it follows the served version every ``online.served_refresh_s``; the wait is
``Launcher.wait_s``). Launch batches are numbered after those already in the served version, so a
restarted run launches new products and knows the earlier ones (regenerated from their ids); the catalogue
check allows, per category, the products added to the served version on top of the shop's own.
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
import pandas as pd

from fashionrec.config import ServingConfig, ShopConfig, SimulationConfig
from fashionrec.datasets.synthetic import (DEVICES, REGIONS, SHORTER_ON, SyntheticShop, context_bonus, generate_shop,
                                          launch_batch, launch_products)

MIN_SHARPNESS = 1e-9  # a shop with taste_sharpness 0 (tastes do not matter) still divides safely
REQUEST_TIMEOUT_S = 30.0  # per request: a page slower than this counts as an error ("timeout"), not a hang
LAUNCH_WAIT_S = 60.0  # default wait for the service to show launched products: 6 of its default refreshes (10 s)
LAUNCH_POLL_S = 0.25
LAUNCH_SESSION = "fashionrec-simulator-launch"  # the session that asks for a launched product's page
KEENNESS_SLOPE, KEENNESS_MIDPOINT = 4.0, 0.5  # the synthetic log's own keenness curve (datasets.synthetic)


class ShopMismatch(ValueError):
    """The running service's catalogue is not the one the given ShopConfig generates."""


class NewProductsUnsupported(ValueError):
    """``new_products_per_day`` > 0 without a model repository to add them to (no :class:`Launcher`)."""


class LaunchFailed(RuntimeError):
    """The model repository refused launched products (nothing published, no content tower, ...)."""


class LaunchNotShown(RuntimeError):
    """Launched products were served by the model but the shop service did not show them in time."""


@dataclass(frozen=True)
class Launcher:
    """Where launched products go: the model repository the service follows, and the Triton (explicit model
    control, gRPC ``host:port``) to load each new version into (None: a polling Triton finds it itself).
    ``wait_s``: how long the service may take to show them (a few of its ``online.served_refresh_s``)."""

    model_repository: str
    serving: ServingConfig = field(default_factory=ServingConfig)
    triton_url: str | None = None
    wait_s: float = LAUNCH_WAIT_S

    def added(self) -> pd.DataFrame:
        """Every product added to the served version without retraining (empty before a publish)."""
        from fashionrec.repository.catalogue import added_products
        from fashionrec.repository.manifest import read_manifest, serving_version

        version = serving_version(read_manifest(self.model_repository))
        return added_products(self.model_repository, version) if version is not None else pd.DataFrame(
            {"product_id": pd.Series(dtype=object), "category": pd.Series(dtype=object)})

    def launch(self, products: pd.DataFrame) -> int:
        """Add ``products`` to the served version; the version now served."""
        from fashionrec.repository.catalogue import add_products

        try:
            return add_products(self.model_repository, products, self.serving, self.triton_url).version
        except ValueError as error:  # add_products' refusals: the repository is untouched
            raise LaunchFailed(f"launching {len(products)} products into {self.model_repository} failed: {error}"
                               ) from error


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
    world, looked up by the ids the service shows. The shop's products come first (``shop.catalogue``'s
    rows), then the launched ones (:meth:`with_products`)."""

    shop: SyntheticShop
    product_row: dict[str, int]  # product id -> row of product_latent
    category_codes: np.ndarray  # each product's category, as an index into categories
    categories: tuple[str, ...]
    product_latent: np.ndarray  # (products, latent_dim): the shop's, then the launched ones'
    looks: pd.DataFrame  # each product's category and colour, in the same rows (the context's effects)
    config: ShopConfig  # the shop's config: its context strength and taste sharpness

    @classmethod
    def generate(cls, shop_config: ShopConfig) -> GroundTruth:
        """Regenerate the shop the service's catalogue came from (no event log: only the tastes are needed)."""
        shop = generate_shop(shop_config, with_events=False)
        categories, codes = np.unique(shop.catalogue["category"].to_numpy(dtype=str), return_inverse=True)
        return cls(shop, {pid: row for row, pid in enumerate(shop.catalogue["product_id"])}, codes,
                   tuple(categories.tolist()), shop.product_latent, _looks(shop.catalogue), shop_config)

    def with_products(self, catalogue: pd.DataFrame, latent: np.ndarray) -> GroundTruth:
        """This truth and launched products (their catalogue rows and latents); ids it knows are skipped."""
        keep = np.array([pid not in self.product_row for pid in catalogue["product_id"]], dtype=bool)
        catalogue, latent = catalogue[keep], latent[keep]
        categories = self.categories + tuple(sorted(set(catalogue["category"]) - set(self.categories)))
        code = {name: i for i, name in enumerate(categories)}
        rows = {pid: len(self.product_latent) + i for i, pid in enumerate(catalogue["product_id"])}
        return GroundTruth(self.shop, {**self.product_row, **rows},
                           np.concatenate([self.category_codes, [code[c] for c in catalogue["category"]]]).astype(int),
                           categories, np.concatenate([self.product_latent, latent.astype(np.float32)]),
                           pd.concat([self.looks, _looks(catalogue)], ignore_index=True), self.config)

    @property
    def num_customers(self) -> int:
        return len(self.shop.customer_tastes)

    def customer_id(self, customer: int) -> str:
        return f"C{customer:06d}"  # datasets.synthetic's ids

    def customer_index(self, customer_id: str) -> int:
        """The inverse of :meth:`customer_id`."""
        return int(customer_id.removeprefix("C"))

    def expected_clicks(self, customer_id: str, product_ids: Sequence[str], simulation: SimulationConfig) -> float:
        """The clicks a look along a carousel of ``product_ids`` (in page order) expects by the behaviour model
        (:func:`click_chances`, without context and before any product was clicked): what an A/B test
        estimates with noise, known here exactly. A product the truth does not know is never clicked."""
        affinity = self.affinities(self.customer_index(customer_id))
        rows = [self.product_row.get(pid) for pid in product_ids]
        return float(click_chances([np.nan if row is None else affinity[row] for row in rows], simulation).sum())

    def affinities(self, customer: int) -> np.ndarray:
        """The customer's true affinity to every product (the shop's, then the launched ones)."""
        return self.product_latent @ self.shop.customer_tastes[customer]

    def context(self, customer: int, rng: np.random.Generator, now: float) -> VisitContext | None:
        """A visit's device, the customer's region and their local time now (None: the shop has no context)."""
        regions = self.shop.customer_regions
        if regions is None:
            return None
        device = str(rng.choice(list(DEVICES), p=list(DEVICES.values())))
        region = list(REGIONS)[int(regions[customer])]
        local = pd.Timestamp(now, unit="s") + pd.Timedelta(hours=REGIONS[region][0])
        return VisitContext(device, region, local.strftime("%Y-%m-%dT%H:%M:%S"), local.hour)

    def context_affinity(self, context: VisitContext) -> np.ndarray:
        """What the context adds to every product's affinity: its logit bonus, in affinity units (the log's
        logits are taste_sharpness x affinity + bonus)."""
        bonus = context_bonus(self.looks, context.region, context.local_hour, self.config.context_strength)
        return bonus / max(self.config.taste_sharpness, MIN_SHARPNESS)

    def favourite_category(self, affinity: np.ndarray) -> str:
        """The category whose products the customer likes best on average (their taste, not their history)."""
        totals = np.bincount(self.category_codes, weights=affinity, minlength=len(self.categories))
        counts = np.bincount(self.category_codes, minlength=len(self.categories))
        return self.categories[int(np.argmax(totals / np.maximum(counts, 1)))]

    def style_words(self, customer: int) -> tuple[str, ...]:
        return self.shop.style_words[int(self.shop.customer_styles[customer])]

    def category_sizes(self) -> dict[str, int]:
        """The shop's own products per category (launched ones not counted)."""
        own = np.bincount(self.category_codes[: len(self.shop.catalogue)], minlength=len(self.categories))
        return {name: count for name, count in zip(self.categories, own.tolist(), strict=True) if count}


# -- what happened ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SimulationSummary:
    """A run's totals. ``page_requests`` and ``event_requests``: requests sent; ``pages``: answered page requests
    by kind (homepage, category, search, product); ``events``: accepted events by type; ``rejected``: refused
    events by the service's reason; ``errors``: requests (pages and posts) without a 2xx answer, by status code
    or transport error ("timeout", "ConnectError");
    ``fallbacks``: carousels and lists the service marked as the trending fallback; ``shown``: product slots
    shown on carousels and lists; ``unknown_products``: shown products the ground truth does not know;
    ``launched``: products launched (added to the served version); ``shown_launched``: slots that showed one
    of the products launched in this run."""

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
    launched: int = 0
    shown_launched: int = 0

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
    launched: int = 0
    shown_launched: int = 0

    def add(self, other: _Tally) -> None:
        self.visits += other.visits
        self.launched += other.launched
        self.shown_launched += other.shown_launched
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
                                 self.unknown_products, seconds, self.launched, self.shown_launched)


def day_line(day: int, days: int, summary: SimulationSummary) -> str:
    """One printed line per simulated day: traffic, events, CTR, throughput and anything that went wrong."""
    events = ", ".join(f"{summary.events.get(kind, 0)} {kind}" for kind in ("click", "add_to_bag", "purchase"))
    problems = [f"{summary.launched} products launched, shown {summary.shown_launched} times" if summary.launched
                else "",
                f"errors {dict(sorted(summary.errors.items()))}" if summary.errors else "",
                f"rejected {dict(sorted(summary.rejected.items()))}" if summary.rejected else "",
                f"{summary.fallbacks} fallbacks" if summary.fallbacks else "",
                f"{summary.unknown_products} unknown products shown" if summary.unknown_products else ""]
    return (f"day {day}/{days}: {summary.visits} visits, {sum(summary.pages.values())} pages, {events}; "
            f"CTR {summary.click_through_rate:.2%}; {summary.visits_per_second:.1f} visits/s, "
            f"{summary.requests_per_second:.1f} requests/s" + "".join(f"; {p}" for p in problems if p))


# -- one visit ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VisitContext:
    """What a visit of a shop with context carries: sent with every page request and event, and moving the
    customer's choices."""

    device: str
    region: str
    local_time: str  # the customer's wall clock when the visit began, ISO 8601
    local_hour: int

    def fields(self, now: float) -> dict[str, str]:
        """The event's context fields, its local time at ``now`` (epoch seconds)."""
        local = pd.Timestamp(now, unit="s") + pd.Timedelta(hours=REGIONS[self.region][0])
        return {"device": self.device, "region": self.region, "local_time": local.strftime("%Y-%m-%dT%H:%M:%S")}


def _looks(catalogue: pd.DataFrame) -> pd.DataFrame:
    return catalogue[["category", "colour"]].reset_index(drop=True)


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
                 customer: int, rng: np.random.Generator, tally: _Tally,
                 launched: frozenset[str] = frozenset()) -> None:
        self.client, self.truth, self.simulation, self.rng, self.tally = client, truth, simulation, rng, tally
        self.launched = launched  # the products launched in this run (counted when shown)
        self.customer, self.customer_id = customer, truth.customer_id(customer)
        self.context = truth.context(customer, rng, time.time())
        self.affinity = truth.affinities(customer)
        self.max_product_pages = simulation.max_product_pages
        if self.context is not None:  # the shop's context moves choices, and mobile visits are shorter
            self.affinity = self.affinity + truth.context_affinity(self.context)
            if self.context.device == SHORTER_ON:
                self.max_product_pages = max(1, self.max_product_pages // 2)
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
        """Look along one carousel or list and follow what catches the eye. A visitor who has opened
        ``max_product_pages`` product pages looks at no further carousel, but every click drawn in a carousel
        looked at is followed: the cap ends a visit between carousels, never part-way along one, so the clicks
        along a carousel keep the examination model's shape (``click_chances``) at every slot."""
        self.tally.shown += len(products)
        self.tally.fallbacks += bool(fallback)
        rows = [self.truth.product_row.get(p["product_id"]) for p in products]
        self.tally.unknown_products += sum(row is None for row in rows)
        self.tally.shown_launched += sum(p["product_id"] in self.launched for p in products)
        if self.product_pages >= self.max_product_pages:
            return
        affinity = [np.nan if row is None else float(self.affinity[row]) for row in rows]
        for slot in draw_clicks(self.rng, affinity, self.simulation):
            product = products[slot]
            if product["product_id"] not in self.clicked:
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
                "request_id": shown.request_id, **self._context_now()}

    def _context_now(self) -> dict[str, str]:
        """The visit's context as a request carries it (its local time now); none for a shop without context."""
        return self.context.fields(time.time()) if self.context else {}

    async def _get(self, kind: str, path: str, **params: str) -> dict[str, Any] | None:
        """A page's JSON, or None when it did not come (counted by status or error: a finding, not a crash). The
        page is asked in the visit's context, as the events it leads to are posted."""
        self.tally.page_requests += 1
        answer = await _request(self.client, self.tally, "GET", path,
                                params={"customer_id": self.customer_id, **params, **self._context_now()})
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


async def _day(client: httpx.AsyncClient, truth: GroundTruth, simulation: SimulationConfig, day: int,
               launched: frozenset[str] = frozenset()) -> _Tally:
    """Every visit of one day, ``concurrency`` in flight; each visit draws from its own seeded generator, so
    the choices do not depend on which visit's answer came first."""
    tally = _Tally()
    todo: Iterator[tuple[int, int]] = iter(enumerate(visitors(truth, simulation, day)))

    async def worker() -> None:
        for index, customer in todo:  # shared: each worker takes the next visit when it is free
            rng = np.random.default_rng((simulation.seed, day, index))
            await _Visit(client, truth, simulation, customer, rng, tally, launched).run()

    await asyncio.gather(*(worker() for _ in range(simulation.concurrency)))
    return tally


async def check_catalogue(client: httpx.AsyncClient, truth: GroundTruth,
                          added: Mapping[str, int] | None = None) -> None:
    """Refuse to simulate against a service whose catalogue another ShopConfig made: every affinity would be
    wrong. Categories and their sizes are compared (``/v1/categories``: no Triton call, no impression): each
    must hold the shop's own products, plus up to ``added[category]`` products added to the served version
    without retraining (launched by an earlier run, say: the service may not have learnt them yet)."""
    response = await client.get("/v1/categories")
    response.raise_for_status()
    served = {c["name"]: int(c["products"]) for c in response.json()["categories"]}
    expected, added = truth.category_sizes(), dict(added or {})
    differing = sorted(name for name in served.keys() | expected.keys()
                       if not expected.get(name, 0) <= served.get(name, 0) <= expected.get(name, 0) + added.get(name, 0))
    if differing:
        raise ShopMismatch(f"the service's catalogue is not the one this shop config generates (products per "
                           f"category differ in {', '.join(differing[:5])}): give the --size / --set shop.* the "
                           "service's catalogue was made with" + ("" if added else " (and, if products were added to "
                                                                  "it, --model-repository)"))


def known_launches(truth: GroundTruth, shop_config: ShopConfig, added: pd.DataFrame) -> tuple[GroundTruth, int]:
    """The truth with the products earlier runs launched into the served version (regenerated from their ids'
    batches), and the next free batch number. ShopMismatch when such a product is not what this shop config
    launches (another config's run launched it)."""
    batches = pd.to_numeric(added["product_id"].map(launch_batch), errors="coerce")  # NaN: not a launched id
    for batch, ids in added["product_id"].groupby(batches):
        catalogue, latent = launch_products(shop_config, len(ids), int(batch))
        stored = added.set_index("product_id").reindex(catalogue["product_id"])
        if stored["title"].isna().any() or list(stored["title"]) != list(catalogue["title"]):
            raise ShopMismatch(f"the products of launch {int(batch)} in the served version are not the ones this shop "
                               "config launches: give the --size / --set shop.* of the run that launched them")
        truth = truth.with_products(catalogue, latent)
    return truth, int(batches.max()) + 1 if batches.notna().any() else 1


async def wait_until_shown(client: httpx.AsyncClient, product_id: str, wait_s: float) -> float:
    """Seconds until the service's product page of ``product_id`` answers (polled, as session
    ``LAUNCH_SESSION``); LaunchNotShown after ``wait_s``."""
    started = time.monotonic()
    last = "no answer"
    while True:
        try:
            response = await client.get(f"/v1/products/{quote(product_id, safe='')}",
                                        params={"session_id": LAUNCH_SESSION})
            if response.is_success:
                return time.monotonic() - started
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as error:
            last = type(error).__name__
        if time.monotonic() - started >= wait_s:
            raise LaunchNotShown(
                f"the shop service did not show launched product {product_id} within {wait_s:g} s (last answer: "
                f"{last}); it is served by the model repository, so is the service following that repository, "
                "and does it refresh (online.served_refresh_s) within the wait? Raise the wait (--launch-wait-s) "
                "for a slower refresh")
        await asyncio.sleep(LAUNCH_POLL_S)


async def _launch(client: httpx.AsyncClient, launcher: Launcher, truth: GroundTruth, shop_config: ShopConfig,
                  count: int, batch: int) -> tuple[GroundTruth, pd.DataFrame, int, float]:
    """Launch batch ``batch``: added to the served version, known to the truth, shown by the service. Returns the
    truth, the products, the version now served and the seconds until the service showed them."""
    catalogue, latent = launch_products(shop_config, count, batch)
    version = await asyncio.to_thread(launcher.launch, catalogue)
    waited = await wait_until_shown(client, str(catalogue["product_id"].iloc[-1]), launcher.wait_s)
    return truth.with_products(catalogue, latent), catalogue, version, waited


async def simulate(base_url: str, shop_config: ShopConfig, simulation: SimulationConfig,
                   echo: Callable[[str], None] = print,
                   transport: httpx.AsyncBaseTransport | None = None,
                   launcher: Launcher | None = None) -> SimulationSummary:
    """The async core: ``simulation.days`` days of visits to the service at ``base_url``, a line per day.
    ``transport``: httpx's (default: the network), e.g. ``httpx.ASGITransport`` for a service in this process.
    ``launcher``: where ``simulation.new_products_per_day`` products go each day after the first (required when
    that is > 0; it also lets the catalogue check allow products added to the served version)."""
    if simulation.new_products_per_day and launcher is None:
        raise NewProductsUnsupported(
            "simulation.new_products_per_day > 0 needs the model repository the shop service follows "
            "(--model-repository, and --triton-url for a Triton with explicit model control): launched products "
            "are added to its served version, which the service picks up")
    truth = GroundTruth.generate(shop_config)
    added = await asyncio.to_thread(launcher.added) if launcher else None
    batch = 1
    if added is not None:
        truth, batch = known_launches(truth, shop_config, added)
    limits = httpx.Limits(max_connections=simulation.concurrency, max_keepalive_connections=simulation.concurrency)
    total = _Tally()
    launched: set[str] = set()
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits,
                                 transport=transport) as client:
        await check_catalogue(client, truth, added["category"].value_counts().to_dict() if added is not None else None)
        started = time.perf_counter()
        last_day = simulation.first_day + simulation.days - 1
        for day in range(simulation.first_day, last_day + 1):
            count = simulation.new_products_per_day if day > simulation.first_day and launcher is not None else 0
            if count:  # before the day's visits (and its clock: the day line's rates are the visits')
                truth, products, version, waited = await _launch(client, launcher, truth, shop_config, count, batch)
                launched.update(products["product_id"])
                echo(f"day {day}/{last_day}: launched {count} products ({products['product_id'].iloc[0]} .. "
                     f"{products['product_id'].iloc[-1]}) as version {version}; the shop showed them after "
                     f"{waited:.1f} s")
                batch += 1
            day_started = time.perf_counter()
            tally = await _day(client, truth, simulation, day, frozenset(launched))
            tally.launched = count
            echo(day_line(day, last_day, tally.summary(1, time.perf_counter() - day_started)))
            total.add(tally)
        return total.summary(simulation.days, time.perf_counter() - started)


def run_simulation(base_url: str, shop_config: ShopConfig, simulation: SimulationConfig,
                   echo: Callable[[str], None] = print, launcher: Launcher | None = None) -> SimulationSummary:
    """:func:`simulate`, for callers without an event loop (the CLI, benchmarks, tests)."""
    return asyncio.run(simulate(base_url.rstrip("/"), shop_config, simulation, echo, launcher=launcher))
