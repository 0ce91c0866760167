"""The storefront: server-rendered HTML pages of the shop, over the same :class:`Shop` as the JSON API.

A person can try the recommender in a browser: pick a known customer (or browse anonymously), see the
homepage's carousels, open categories and search, view products and add them to the bag or buy them.
Every view and button posts the same events a real site would (with the page's context), so the pages change
as one browses.

Who is browsing lives in cookies: ``fr_customer`` holds a chosen customer id; ``fr_session`` a random
session id set on the first visit, which is the visitor whenever no customer is chosen (an anonymous
session, personalised from its own events). No JavaScript: plain links and forms, so it works anywhere
and browser tests need no waiting. Errors the caller can fix (:class:`BadInput`) render a 400 page,
unknown products and categories (:class:`NotFound`) a 404 page, both with the message.

What the visitor browses on lives in the query: every page takes the context parameters ``device``,
``region`` and ``local_time`` (:mod:`.context`; a refused one renders a 422 page naming it), asks with them
and posts its events with them. Every link, form and redirect between pages carries the device and region
on (:data:`CARRIED`), so a browsing session keeps them; not the local time, which is one request's wall
clock: carried on, it would go stale, and be refused minutes later. The start page offers a choice of device.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode
from uuid import uuid4

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup
from starlette.staticfiles import StaticFiles

from fashionrec.config import OnlineConfig
from fashionrec.online.cards import product_svg
from fashionrec.online.context import PARAMETERS
from fashionrec.online.views import NO_CONTEXT, BadContext, BadInput, NotFound, PageContext, ProductList, Shop, Visitor

PACKAGE = "fashionrec.online"  # templates/ and static/ are package data, found wherever it is installed
SHOP_NAME = "fashionrec"
CUSTOMER_COOKIE = "fr_customer"
SESSION_COOKIE = "fr_session"
SESSION_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex: anything else in the cookie is replaced, not trusted
REQUEST_ID = re.compile(r"[0-9a-f]{32}")  # a page's request id (uuid4().hex), carried by a card's ?ref=
SECONDS_PER_DAY = 86_400
EXAMPLE_CUSTOMERS = 8  # customers offered on the start page
NAV_CATEGORIES = 10  # the header lists the largest categories, up to this many
FIRST_PAGE = 1  # page numbers in links and in Shop calls count from here
PAGE_NUMBER = re.compile(r"[0-9]{1,9}")  # ?page=: plain digits, short enough that no listing is that long
CURRENCY = "£"
# Personal pages must not be kept by shared caches: one customer's homepage is not another's.
PAGE_CACHE_CONTROL = "private, no-store"
UNKNOWN_PRODUCT = "unknown_product"  # ingest's reason code when a posted event names no catalogue product

CARRIED = ("device", "region")  # the context parameters links between pages carry on

# The product page's "?added=" confirmations, by what was done.
CONFIRMATIONS = {"bag": "Added to your bag.", "purchase": "Thank you for your order!"}


@dataclass(frozen=True)
class Action:
    """A product page button: the event it posts and the confirmation the page then shows."""

    event_type: str
    added: str


BAG = Action("add_to_bag", "bag")
BUY = Action("purchase", "purchase")


@dataclass(frozen=True)
class Browser:
    """What the cookies say: the chosen customer (if any) and the session (created on the first visit); and
    what the query says: the context the pages are asked with and their links carry on."""

    customer_id: str | None
    session_id: str
    new_session: bool
    context: PageContext = NO_CONTEXT

    @property
    def carried(self) -> dict[str, str]:
        """The context parameters the page's links carry on (:data:`CARRIED`)."""
        return {name: value for name, value in self.context.query.items() if name in CARRIED}

    @property
    def visitor(self) -> Visitor:
        """The chosen customer, or else the anonymous session."""
        if self.customer_id is not None:
            return Visitor(customer_id=self.customer_id)
        return Visitor(session_id=self.session_id)


Build = Callable[[Browser], Awaitable[Response]]


def mount_storefront(app: FastAPI, shop: Shop, config: OnlineConfig) -> None:
    """Add the storefront's HTML routes to ``app`` and serve its stylesheet at ``/static``."""
    storefront = Storefront(shop, config, _templates())
    router = APIRouter()
    for path, endpoint, method in (
        ("/", storefront.start, "GET"),
        ("/as", storefront.choose, "GET"),
        ("/home", storefront.home, "GET"),
        ("/category/{name:path}", storefront.category, "GET"),
        ("/search", storefront.search, "GET"),
        ("/product/{product_id:path}", storefront.product, "GET"),
        ("/bag", storefront.bag, "POST"),
        ("/buy", storefront.buy, "POST"),
    ):
        router.add_api_route(path, endpoint, methods=[method], response_class=HTMLResponse, include_in_schema=False)
    app.include_router(router)
    app.mount("/static", StaticFiles(packages=[(PACKAGE, "static")]), name="static")


def _templates() -> jinja2.Environment:
    """The page templates, autoescaped (titles and ids are user data), strict about missing names so a
    template typo fails a test instead of rendering an empty string."""
    env = jinja2.Environment(loader=jinja2.PackageLoader(PACKAGE, "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    env.globals["product_svg"] = lambda card: Markup(product_svg(card))  # product_svg escapes its own input
    env.filters["money"] = money
    env.filters["path_part"] = lambda text: quote(str(text), safe="")
    return env


def money(price: float) -> str:
    """A price as the shop shows it: "£39.00"."""
    return f"{CURRENCY}{price:,.2f}"


class Storefront:
    """The route handlers, over one shop; each renders a page for the visitor the cookies name."""

    def __init__(self, shop: Shop, config: OnlineConfig, env: jinja2.Environment) -> None:
        self.shop = shop
        self.config = config
        self.env = env

    async def start(self, request: Request) -> Response:
        """The start page: choose a customer to browse as, or browse anonymously, and the device to browse on."""
        async def build(browser: Browser) -> Response:
            return self._page(request, browser, "start.html", customers=self.shop.example_customers(EXAMPLE_CUSTOMERS),
                              devices=self.shop.devices())
        return await self._serve(request, build)

    async def choose(self, request: Request, customer: str | None = None, anonymous: str | None = None) -> Response:
        """Browse as ``customer`` (kept in a cookie), or as the anonymous session; then the homepage."""
        async def build(browser: Browser) -> Response:
            response = RedirectResponse(_link("/home", browser.carried), status_code=HTTPStatus.SEE_OTHER)
            if customer is not None:
                self._set_cookie(response, CUSTOMER_COOKIE, self._customer_id(customer))
            elif anonymous:
                response.delete_cookie(CUSTOMER_COOKIE)
            else:
                response = RedirectResponse(_link("/", browser.carried), status_code=HTTPStatus.SEE_OTHER)
            return response
        return await self._serve(request, build)

    async def home(self, request: Request) -> Response:
        """The personal homepage: one carousel per touchpoint."""
        async def build(browser: Browser) -> Response:
            homepage = await self.shop.homepage(browser.visitor, browser.context)
            return self._page(request, browser, "home.html", homepage=homepage)
        return await self._serve(request, build)

    async def category(self, request: Request, name: str, page: str = str(FIRST_PAGE)) -> Response:
        """One page of a category, in the visitor's order."""
        async def build(browser: Browser) -> Response:
            number = _page_number(page)
            listing = await self.shop.category_page(browser.visitor, name, number, self.config.page_size,
                                                    browser.context)
            return self._listing(request, browser, listing, f"/category/{quote(name, safe='')}", {})
        return await self._serve(request, build)

    async def search(self, request: Request, q: str = "", page: str = str(FIRST_PAGE)) -> Response:
        """One page of search results, in the visitor's order."""
        async def build(browser: Browser) -> Response:
            query, number = self._query(q), _page_number(page)
            listing = await self.shop.search(browser.visitor, query, number, self.config.page_size, browser.context)
            return self._listing(request, browser, listing, "/search", {"q": query}, query=query)
        return await self._serve(request, build)

    async def product(self, request: Request, product_id: str, added: str = "", ref: str = "") -> Response:
        """A product's page; opening it is the visitor's click (attributed to the page it came from, ``ref``),
        recorded before the similar items are asked for, so they already reflect it."""
        async def build(browser: Browser) -> Response:
            click = {"product_id": product_id, "event_type": "click", **browser.context.query}
            if REQUEST_ID.fullmatch(ref):  # anything else is not a page of ours: the click stays unattributed
                click["request_id"] = ref
            await self.shop.post_events(browser.visitor, [click])
            page = await self.shop.product_page(browser.visitor, product_id, context=browser.context)
            return self._page(request, browser, "product.html", page=page, confirmation=CONFIRMATIONS.get(added))
        return await self._serve(request, build)

    async def bag(self, request: Request) -> Response:
        """The "Add to bag" button."""
        return await self._serve(request, lambda browser: self._act(request, browser, BAG))

    async def buy(self, request: Request) -> Response:
        """The "Buy now" button."""
        return await self._serve(request, lambda browser: self._act(request, browser, BUY))

    async def _act(self, request: Request, browser: Browser, action: Action) -> Response:
        """Post the button's event, then show the product again (303: a reload must not post twice)."""
        product_id = await self._form_product_id(request)
        event = {"product_id": product_id, "event_type": action.event_type, **browser.context.query}
        receipt = await self.shop.post_events(browser.visitor, [event])
        for rejection in receipt.rejected:
            if rejection.reason == UNKNOWN_PRODUCT:
                raise NotFound(f"There is no product {product_id!r}.")
            raise BadInput(f"That could not be recorded ({rejection.reason}).")
        location = _link(f"/product/{quote(product_id, safe='')}?{urlencode({'added': action.added})}",
                         browser.carried)
        return RedirectResponse(location, status_code=HTTPStatus.SEE_OTHER)

    async def _serve(self, request: Request, build: Build) -> Response:
        """Run a page's ``build`` for the cookies' visitor in the query's context: its errors become error pages
        (whose links drop a refused context), and a first visit gets its session cookie whatever the page."""
        browser = self._browser(request)
        try:
            browser = replace(browser, context=self._context(request))
            response = await build(browser)
        except NotFound as error:
            response = self._error(request, browser, HTTPStatus.NOT_FOUND, str(error))
        except BadContext as error:
            response = self._error(request, browser, HTTPStatus.UNPROCESSABLE_ENTITY, str(error))
        except BadInput as error:
            response = self._error(request, browser, HTTPStatus.BAD_REQUEST, str(error))
        if browser.new_session:
            self._set_cookie(response, SESSION_COOKIE, browser.session_id)
        response.headers["Cache-Control"] = PAGE_CACHE_CONTROL
        return response

    def _browser(self, request: Request) -> Browser:
        """The visitor the cookies name; a missing or malformed session id is replaced by a new one."""
        customer = unquote(request.cookies.get(CUSTOMER_COOKIE, ""))  # percent-encoded by _set_cookie
        customer = customer if self._valid_id(customer) else None
        session = request.cookies.get(SESSION_COOKIE, "")
        if SESSION_ID.fullmatch(session):
            return Browser(customer, session, new_session=False)
        return Browser(customer, uuid4().hex, new_session=True)

    def _context(self, request: Request) -> PageContext:
        """The context the query names, checked by the shop (:class:`BadContext` for a refused parameter)."""
        return self.shop.context(*(request.query_params.get(name) for name in PARAMETERS))

    def _customer_id(self, text: str) -> str:
        """A customer id typed or picked on the start page, checked like the event API's ids."""
        customer = text.strip()
        if not self._valid_id(customer):
            raise BadInput(f"A customer id is 1 to {self.config.max_id_length} characters.")
        return customer

    def _valid_id(self, text: str) -> bool:
        return 0 < len(text) <= self.config.max_id_length and text.isprintable()

    def _query(self, text: str) -> str:
        """The search text, or BadInput saying what is wrong with it."""
        if len(text) > self.config.max_query_length:
            raise BadInput(f"Search text is limited to {self.config.max_query_length} characters; "
                           f"this was {len(text)}.")
        if not text.strip():
            raise BadInput("Type something to search for.")
        return text.strip()

    async def _form_product_id(self, request: Request) -> str:
        """The urlencoded form's ``product_id``. Parsed here rather than with ``request.form()``, which
        needs python-multipart, not a dependency of the service; the storefront posts no files."""
        body = await request.body()
        if len(body) > self.config.max_body_bytes:
            raise BadInput(f"The form is larger than {self.config.max_body_bytes} bytes.")
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        product_id = (fields.get("product_id") or [""])[0].strip()
        if not product_id:
            raise BadInput("The form named no product.")
        return product_id

    def _listing(self, request: Request, browser: Browser, listing: ProductList, path: str,
                 params: dict[str, str], query: str = "") -> Response:
        """A category page or search results, with links to the neighbouring pages."""
        def link(number: int) -> str:
            return f"{path}?{urlencode({**params, 'page': number, **browser.carried})}"
        previous = link(listing.page - 1) if listing.page > FIRST_PAGE else None
        following = link(listing.page + 1) if _shown_through(listing) < listing.total else None
        return self._page(request, browser, "listing.html", listing=listing, previous=previous, following=following,
                          first_shown=_shown_through(listing) - len(listing.products) + 1,
                          last_shown=_shown_through(listing), query=query)

    def _error(self, request: Request, browser: Browser, status: HTTPStatus, message: str) -> Response:
        """The 404 or 400 page, saying what went wrong (the message is escaped like everything else)."""
        return self._page(request, browser, "error.html", status_code=status, status=status,
                          message=message or status.description)

    def _page(self, request: Request, browser: Browser, template: str, status_code: int = HTTPStatus.OK,
              **context: Any) -> Response:
        """Render ``template`` with the header's context: the shop, its categories, who is browsing and on what
        (``page_context``; ``link(url)`` is ``url`` with the parameters it ``carried`` on, for every link between
        pages)."""
        carried = browser.carried
        page = self.env.get_template(template).render(
            request=request, shop_name=SHOP_NAME, nav=self.shop.categories()[:NAV_CATEGORIES],
            visitor=browser.visitor, max_query_length=self.config.max_query_length, page_context=browser.context,
            carried=carried, link=lambda url: _link(url, carried), **{"query": "", **context})
        return HTMLResponse(page, status_code=status_code)

    def _set_cookie(self, response: Response, name: str, value: str) -> None:
        """A cookie as long-lived as an anonymous session's events; Lax, so other sites cannot post
        events for the visitor. The value is percent-encoded: a customer id may hold any printable
        character, a cookie header only some ASCII."""
        max_age = int(self.config.anonymous_ttl_days * SECONDS_PER_DAY)
        response.set_cookie(name, quote(value, safe=""), max_age=max_age, httponly=True, samesite="lax")


def _link(url: str, query: Mapping[str, str]) -> str:
    """``url`` with ``query``'s parameters added (the page context a link carries on)."""
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode(query)}"


def _page_number(text: str) -> int:
    """``?page=`` as a number from FIRST_PAGE, or BadInput (not a 422 JSON body on an HTML page)."""
    if not PAGE_NUMBER.fullmatch(text) or int(text) < FIRST_PAGE:
        raise BadInput(f"The page number must be a whole number from {FIRST_PAGE}, not {text!r}.")
    return int(text)


def _shown_through(listing: ProductList) -> int:
    """How many of the listing's products are on this page and the ones before it."""
    return (listing.page - FIRST_PAGE) * listing.page_size + len(listing.products)

