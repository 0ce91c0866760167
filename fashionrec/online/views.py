"""What the service's pages hold, for the JSON API and the storefront alike, and the errors they raise.

:class:`Shop` is the contract between the page logic (:mod:`.pages`) and its two front ends: the
``/v1`` JSON endpoints and the server-rendered storefront (:mod:`.storefront`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from fashionrec.online.events import Rejection


class NotFound(LookupError):
    """An unknown product or category (404)."""


class BadInput(ValueError):
    """A request the caller must fix (400): the message says what is wrong."""


class TooLarge(BadInput):
    """A request over one of the service's bounds (413): a body, or a batch of events."""


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

    async def homepage(self, visitor: Visitor) -> Homepage: ...

    async def category_page(self, visitor: Visitor, category: str, page: int, page_size: int) -> ProductList: ...

    async def search(self, visitor: Visitor, query: str, page: int, page_size: int) -> ProductList: ...

    async def product_page(self, visitor: Visitor, product_id: str, alpha: float | None = None) -> ProductPage:
        """The product and similar items; ``alpha`` weighs the product in the blend (default: the published)."""

    async def post_events(self, visitor: Visitor | None, events: list[dict[str, object]]) -> EventReceipt:
        """Check, log and remember a batch; with a visitor, each event's customer id is the visitor's."""
