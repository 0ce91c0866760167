"""What the service's pages hold, for the JSON API and the storefront alike, and the errors they raise.

:class:`Shop` is the contract between the page logic (:mod:`.pages`) and its two front ends: the
``/v1`` JSON endpoints and the server-rendered storefront (:mod:`.storefront`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fashionrec.online.events import Rejection
from fashionrec.serving.requests import RequestContext


class NotFound(LookupError):
    """An unknown product or category (404)."""


class BadInput(ValueError):
    """A request the caller must fix (400): the message says what is wrong."""


class TooLarge(BadInput):
    """A request over one of the service's bounds (413): a body, or a batch of events."""


class BadContext(BadInput):
    """A page's context parameter the event API's rules refuse (422, as any bad query parameter): ``parameter``
    names it, ``reason`` is ingest's code (``bad_device``, ``bad_local_time``, ...)."""

    def __init__(self, parameter: str, reason: str, message: str) -> None:
        super().__init__(message)
        self.parameter, self.reason = parameter, reason


@dataclass(frozen=True)
class Visitor:
    """Who is browsing: a known customer, or an anonymous session (exactly one of the two ids)."""

    customer_id: str | None = None
    session_id: str | None = None

    def __post_init__(self) -> None:
        if (self.customer_id is None) == (self.session_id is None):
            raise BadInput("give exactly one of customer_id and session_id")

    @property
    def key(self) -> str:
        """The store's key: ``customer:<id>`` or ``session:<id>`` (the two never collide)."""
        return f"customer:{self.customer_id}" if self.customer_id is not None else f"session:{self.session_id}"

    @property
    def events_customer_id(self) -> str:
        """The customer id logged with the visitor's events (a session's is ``session:<id>``)."""
        return self.customer_id if self.customer_id is not None else f"session:{self.session_id}"


@dataclass(frozen=True)
class PageContext:
    """A page request's checked context; None where unknown (absent or blank). ``local_time`` is the text as
    given (stripped), ``hour`` (0-23) and ``weekday`` (Monday 0 .. Sunday 6) its wall clock's."""

    device: str | None = None
    region: str | None = None
    local_time: str | None = None
    hour: int | None = None
    weekday: int | None = None

    @property
    def known(self) -> bool:
        return any(value is not None for value in (self.device, self.region, self.local_time))

    @property
    def request(self) -> RequestContext | None:
        """What Triton's touchpoints take; None without any context, so such a page asks as it always did."""
        return RequestContext(self.device, self.region, self.hour, self.weekday) if self.known else None

    @property
    def logged(self) -> dict[str, str | None]:
        """The impression log's context columns."""
        return {"device": self.device, "region": self.region, "local_time": self.local_time}

    @property
    def query(self) -> dict[str, str]:
        """The known values as query parameters: what links between pages carry on."""
        return {name: value for name, value in self.logged.items() if value is not None}


NO_CONTEXT = PageContext()


@dataclass(frozen=True)
class ProductCard:
    """A product as a page shows it; ``score`` is the model's when it was ranked (None otherwise)."""

    product_id: str
    title: str
    category: str
    colour: str
    brand: str
    price: float
    description: str = ""
    score: float | None = None


@dataclass(frozen=True)
class Carousel:
    """One row of a page: ``name`` is the touchpoint (for_you, new_in, trending, sale, category:<name>,
    similar); ``fallback`` when Triton did not answer and the trending list stood in."""

    name: str
    title: str
    products: tuple[ProductCard, ...]
    fallback: bool = False


@dataclass(frozen=True)
class Homepage:
    """``personalised`` is false when the visitor has no event the served model knows (a new customer or
    session, or only products newer than the model): every carousel is then in trending order, and the
    page says so rather than passing a popularity list off as personal. ``history_events``: the events
    the service holds for the visitor."""

    visitor: Visitor
    carousels: tuple[Carousel, ...]
    request_id: str
    model_version: int | None = None
    personalised: bool = False
    history_events: int = 0


@dataclass(frozen=True)
class ProductList:
    """A category page or search results, personally ordered, one page of them."""

    title: str
    products: tuple[ProductCard, ...]
    page: int
    page_size: int
    total: int
    request_id: str
    fallback: bool = False


@dataclass(frozen=True)
class ProductPage:
    product: ProductCard
    similar: Carousel
    request_id: str


@dataclass(frozen=True)
class EventReceipt:
    accepted: int
    rejected: tuple[Rejection, ...] = field(default_factory=tuple)


class Shop(Protocol):
    """The pages, as the JSON API and the storefront ask for them."""

    def categories(self) -> list[str]:
        """Every category of the catalogue, largest first."""

    def example_customers(self, count: int) -> list[str]:
        """A few known customer ids, to pick from on the storefront's start page."""

    def devices(self) -> tuple[str, ...]:
        """The devices a page's context may name (``ingest.devices``), to pick from on the start page."""

    def context(self, device: str | None, region: str | None, local_time: str | None) -> PageContext:
        """A page's context from its query parameters, checked with the event API's rules at the shop's clock
        (:class:`BadContext` names a refused one)."""

    async def homepage(self, visitor: Visitor, context: PageContext = NO_CONTEXT) -> Homepage: ...

    async def category_page(self, visitor: Visitor, category: str, page: int, page_size: int,
                            context: PageContext = NO_CONTEXT) -> ProductList: ...

    async def search(self, visitor: Visitor, query: str, page: int, page_size: int,
                     context: PageContext = NO_CONTEXT) -> ProductList: ...

    async def product_page(self, visitor: Visitor, product_id: str, alpha: float | None = None,
                           context: PageContext = NO_CONTEXT) -> ProductPage:
        """The product and similar items; ``alpha`` weighs the product in the blend (default: the published)."""

    async def post_events(self, visitor: Visitor | None, events: list[dict[str, object]]) -> EventReceipt:
        """Check, log and remember a batch; with a visitor, each event's customer id is the visitor's."""
