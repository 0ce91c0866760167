"""The ASGI app of the shop service: the ``/v1`` JSON API, health, readiness, metrics and the storefront.

Bounded at the edge: a body over ``online.max_body_bytes`` gets 413 before it is read (by its
Content-Length, or while a chunked body streams in); every id, query and batch has a bound of its own.
Client mistakes are 4xx with a short, specific message that never echoes a large input; a Triton that
is down or slow is not the client's problem: pages fall back to the trending list, marked as such.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from fashionrec.config import OnlineConfig
from fashionrec.online.context import CONTEXT_MAX_LENGTH
from fashionrec.online.metrics import ShopMetrics
from fashionrec.online.pages import ShopService
from fashionrec.online.readiness import Readiness
from fashionrec.online.store import StoreUnavailable
from fashionrec.online.storefront import mount_storefront
from fashionrec.online.views import (BadContext, BadInput, Carousel, EventReceipt, Homepage, NotFound, PageContext,
                                     ProductList, ProductPage, TooLarge, Visitor)

API_VERSION = "v1"
REQUEST_ID_MAX_LENGTH = 64  # the service's own request ids are 32 hex digits
MESSAGE_LIMIT = 300  # characters of an error message: enough to say what is wrong, never a whole input


class EventIn(BaseModel):
    """One posted event: a customer (or an anonymous session), a product, what happened and when."""

    customer_id: str | None = None
    session_id: str | None = None
    product_id: str | None = None
    event_type: str | None = None
    timestamp: str | float | None = Field(None, description="ISO 8601 or epoch seconds; default: now")
    weight: float | None = Field(None, description="default: the event type's weight")
    request_id: str | None = Field(None, max_length=REQUEST_ID_MAX_LENGTH,
                                   description="the request_id of the page that showed the product (attribution)")
    device: str | None = Field(None, max_length=CONTEXT_MAX_LENGTH, description="mobile, desktop or tablet "
                               "(ingest.devices)")
    channel: str | None = Field(None, max_length=CONTEXT_MAX_LENGTH, description="online, store or app "
                                "(ingest.channels)")
    region: str | None = Field(None, max_length=CONTEXT_MAX_LENGTH, description="a region code or name")
    local_time: str | None = Field(None, max_length=CONTEXT_MAX_LENGTH,
                                   description="the customer's wall-clock time, ISO 8601")


class EventBatch(BaseModel):
    events: list[EventIn]


@dataclasses.dataclass(frozen=True)
class Lifecycle:
    """What runs around the app's life: ``startup`` before the first request (seeding state), ``background``
    while it serves (log rolling, version refresh), ``shutdown`` after (closing the log, store and channel)."""

    startup: Callable[[], Awaitable[None]] | None = None
    background: Callable[[], Awaitable[None]] | None = None
    shutdown: Callable[[], Awaitable[None]] | None = None


def create_app(shop: ShopService, readiness: Readiness, online: OnlineConfig,
               lifecycle: Lifecycle = Lifecycle()) -> FastAPI:
    """The app over a built service."""
    app = FastAPI(title="fashionrec shop", version=API_VERSION, lifespan=_lifespan(lifecycle),
                  description="Recommendations for every touchpoint of a fashion shop, with live customer state.")
    _errors(app)
    app.add_middleware(BodyLimit, max_bytes=online.max_body_bytes)
    app.add_middleware(Observed, metrics=shop.metrics)  # outermost: refused bodies are counted too
    _api(app, shop, online)
    _operations(app, shop, readiness)
    mount_storefront(app, shop, online)
    return app


def _lifespan(lifecycle: Lifecycle):
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if lifecycle.startup:
            await lifecycle.startup()
        task = asyncio.create_task(lifecycle.background()) if lifecycle.background else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            if lifecycle.shutdown:
                await lifecycle.shutdown()
    return lifespan


def visitor_of(customer_id: str | None, session_id: str | None, online: OnlineConfig) -> Visitor:
    """The visitor a request names (exactly one id, each within ``online.max_id_length``)."""
    for name, value in (("customer_id", customer_id), ("session_id", session_id)):
        if value is not None and not 0 < len(value) <= online.max_id_length:
            raise BadInput(f"{name} must have 1 to {online.max_id_length} characters, got {len(value)}")
    return Visitor(customer_id, session_id)


def page_context_of(shop: ShopService) -> Any:
    """The dependency every page endpoint takes its context with: the optional ``device``, ``region`` and
    ``local_time`` query parameters, checked with the event API's rules (a refused one: 422 naming it).
    Asynchronous although it never waits: FastAPI runs a plain ``def`` dependency in its thread pool, a
    thread hop on every page request for a few microseconds of parsing."""
    async def context(device: str | None = Query(None, description="mobile, desktop or tablet (ingest.devices)"),
                      region: str | None = Query(None, description="a region code or name"),
                      local_time: str | None = Query(None, description="the customer's wall-clock time now, ISO "
                                                     "8601, with or without its UTC offset (its hour and weekday "
                                                     "are the model's)")
                      ) -> PageContext:
        return shop.context(device, region, local_time)
    return Depends(context)


def _api(app: FastAPI, shop: ShopService, online: OnlineConfig) -> None:
    prefix = f"/{API_VERSION}"
    page_size = Query(online.page_size, ge=1, le=online.max_page_size)
    page_context = page_context_of(shop)

    @app.get(f"{prefix}/homepage", response_model=Homepage, tags=["pages"])
    async def homepage(customer_id: str | None = None, session_id: str | None = None,
                       context: PageContext = page_context) -> Homepage:
        """Carousels for a customer or an anonymous session: for you, new in, trending, sale, favourite categories."""
        return await shop.homepage(visitor_of(customer_id, session_id, online), context)

    @app.get(f"{prefix}/recommendations", response_model=Carousel, tags=["pages"])
    async def recommendations(customer_id: str | None = None, session_id: str | None = None,
                              k: int = Query(online.carousel_size, ge=1), candidate_set: str | None = None,
                              context: PageContext = page_context) -> Carousel:
        """One carousel for the visitor (``recommend``, everything seen excluded), optionally among a published
        candidate set (new_in, sale, ...): one Triton call."""
        return await shop.recommendations(visitor_of(customer_id, session_id, online), k, candidate_set, context)

    @app.get(f"{prefix}/categories", tags=["pages"])
    async def categories() -> dict[str, list[dict[str, Any]]]:
        return {"categories": [{"name": c, "products": len(shop.catalogue.in_category(c))} for c in shop.categories()]}

    @app.get(f"{prefix}/categories/{{category}}", response_model=ProductList, tags=["pages"])
    async def category(category: str, customer_id: str | None = None, session_id: str | None = None,
                       page: int = Query(1, ge=1), page_size: int = page_size,
                       context: PageContext = page_context) -> ProductList:
        """The category's products, personally ordered (``rerank``), one page of them."""
        return await shop.category_page(visitor_of(customer_id, session_id, online), category, page, page_size,
                                        context)

    @app.get(f"{prefix}/search", response_model=ProductList, tags=["pages"])
    async def search(q: str, customer_id: str | None = None, session_id: str | None = None,
                     page: int = Query(1, ge=1), page_size: int = page_size,
                     context: PageContext = page_context) -> ProductList:
        """Products whose title, description, brand, colour or category match the words, personally ordered."""
        return await shop.search(visitor_of(customer_id, session_id, online), q, page, page_size, context)

    @app.get(f"{prefix}/products/{{product_id}}", response_model=ProductPage, tags=["pages"])
    async def product(product_id: str, customer_id: str | None = None, session_id: str | None = None,
                      alpha: float | None = Query(None, ge=0.0, le=1.0, description="weight of the product in the "
                                                  "similar-items blend; default: the published one"),
                      context: PageContext = page_context) -> ProductPage:
        """The product and similar items (the product blended with the customer's vector)."""
        return await shop.product_page(visitor_of(customer_id, session_id, online), product_id, alpha, context)

    @app.post(f"{prefix}/events", response_model=EventReceipt, tags=["events"])
    async def events(batch: EventBatch) -> EventReceipt:
        """Check a batch with ingest's rules, log it durably, remember it: acknowledged events are never lost."""
        return await shop.post_events(None, [e.model_dump(exclude_none=True) for e in batch.events])


def _operations(app: FastAPI, shop: ShopService, readiness: Readiness) -> None:
    @app.get("/health", tags=["operations"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"])
    async def ready(strict: bool = False) -> JSONResponse:
        """Readiness: the service can answer pages (its state store answers). ``degraded`` when a touchpoint's
        canary failed (pages then fall back); ``strict=true`` also requires every touchpoint to answer."""
        report = await readiness.check()
        healthy = report.serving and (report.touchpoints_ok or not strict)
        return JSONResponse(dataclasses.asdict(report), status_code=200 if healthy else 503)

    @app.get("/metrics", tags=["operations"])
    async def metrics() -> Response:
        return Response(shop.metrics.exposition(), media_type="text/plain; version=0.0.4")


def _errors(app: FastAPI) -> None:
    def handler(status: int):
        async def respond(_: Request, error: Exception) -> JSONResponse:
            return JSONResponse({"detail": _short(str(error))}, status_code=status)
        return respond

    for kind, status in ((NotFound, 404), (TooLarge, 413), (BadInput, 400),
                         (StoreUnavailable, 503)):
        app.add_exception_handler(kind, handler(status))

    async def bad_context(_: Request, error: BadContext) -> JSONResponse:
        """A refused context parameter: 422 in FastAPI's own shape, naming the parameter and ingest's reason."""
        detail = [{"loc": ["query", error.parameter], "msg": _short(str(error)), "type": error.reason}]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(BadContext, bad_context)

    async def invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, without the offending input (it may be large)."""
        detail = [{"loc": list(e.get("loc", ())), "msg": _short(e.get("msg", "")), "type": e.get("type")}
                  for e in error.errors()[:10]]
        return JSONResponse({"detail": detail}, status_code=422)

    app.add_exception_handler(RequestValidationError, invalid)


def _short(message: str) -> str:
    return message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "…"


class Observed:
    """ASGI middleware: count and time every request by its route's path template (unmatched: "other").
    Plain ASGI, not ``BaseHTTPMiddleware``, which costs a task and a stream per request."""

    def __init__(self, app: Any, metrics: ShopMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), ["500"]

        async def sending(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = str(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            endpoint = getattr(scope.get("route"), "path", "other")
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
            self.metrics.requests.labels(endpoint, status[0]).inc()


class BodyLimit:
    """ASGI middleware: 413 for a body over ``max_bytes``, judged by its Content-Length before a byte is read;
    a chunked body is read up to the limit first, then handed on whole or refused. A request with neither
    header has no body (a page's GET) and passes straight through."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers:  # no body (RFC 9112, 6.3): nothing to read
            await self.app(scope, receive, send)
            return
        if declared is not None:
            if declared.isdigit() and int(declared) <= self.max_bytes:
                await self.app(scope, receive, send)
            else:
                await self._refuse(scope, receive, send)
            return
        body = await self._read_bounded(receive)
        if body is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_bounded(self, receive: Callable) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        response = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)


def _replay(body: bytes, receive: Callable) -> Callable:
    """A receive that gives ``body`` once, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replayed() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replayed
