"""The pages of the shop, composed from Triton's touchpoints and the customer's live state.

* Homepage: carousels (*for you*, *new in*, *trending*, *sale*, one per favourite category), asked of
  Triton in parallel and de-duplicated in page order, so no product shows twice. Everything the visitor
  interacted with is excluded (their whole stored history goes with ``EXCLUDE_SEEN``; the server pools
  only its window). A visitor without history gets each carousel in trending order: nothing to personalise.
* Category and search pages: the products personally ordered by ``rerank`` (the first
  ``online.rerank_candidates`` by trend), then paged.
* Product page: the product and *similar items* (``similar``: hero blended with the customer vector).
* Events: checked with ingest's rules, made durable in the event log, then added to the live state, so
  the next page reflects them.

When Triton is down, slow or refuses, a carousel or page falls back to the trending list (the served
popularity prior, in memory), marked ``fallback``, and counted. Every carousel shown is logged as an
impression (request id, customer, touchpoint, model version, products, positions, scores, the page's context).

Every page takes the visitor's context (device, region, local time: :mod:`.context`), passed to each of its
Triton calls; a page without one asks exactly as it would without the feature.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from fashionrec.config import PipelineConfig
from fashionrec.contract.layout import CATEGORY_SET_PREFIX
from fashionrec.online.catalogue import ShopCatalogue
from fashionrec.online.context import page_context
from fashionrec.online.event_log import EventLog
from fashionrec.online.experiments import ExperimentRouter, Route
from fashionrec.online.impressions import ImpressionBuffer
from fashionrec.online.exploration import ExplorationPolicy, Shown
from fashionrec.online.events import ShopEvent, check_events, context_of
from fashionrec.online.metrics import ShopMetrics
from fashionrec.online.served import ServedView
from fashionrec.online.store import CustomerStore
from fashionrec.online.triton import Ranked, Touchpoints, TritonRefused, TritonUnavailable
from fashionrec.online.views import (NO_CONTEXT, BadInput, Carousel, EventReceipt, Homepage, NotFound, PageContext,
                                     ProductList, ProductPage, TooLarge, Visitor)
from fashionrec.repository.publish import NEW_IN_SET
from fashionrec.serving.requests import History

SALE_SET = "sale"
SESSION_PREFIX = "session:"  # a session's events are logged under customer id "session:<id>"
SECONDS_PER_DAY = 86_400.0
FIXED_CAROUSELS = ((NEW_IN_SET, "New in"), (SALE_SET, "On sale"))  # shown when the served version has the set


@dataclass(frozen=True)
class _Answer:
    """What a plan got: Triton's ranking, or None when trending order stands in; ``fallback`` when Triton was
    asked and did not answer (down, slow or refusing)."""

    ranked: Ranked | None = None
    fallback: bool = False


@dataclass(frozen=True)
class _Plan:
    """One carousel to fill: ``ask`` calls Triton for ``k`` products; ``allowed`` limits its fallback."""

    name: str
    title: str
    ask: Callable[[int], Awaitable[Ranked]] | None  # None: trending order, no Triton call
    allowed: frozenset[str] | None = None


def store_key(customer_id: str) -> str:
    """The live-state key of a logged customer id (a session's is ``session:<id>`` already)."""
    return customer_id if customer_id.startswith(SESSION_PREFIX) else f"customer:{customer_id}"


class ShopService:
    """The :class:`fashionrec.online.views.Shop` of a running service."""

    def __init__(self, catalogue: ShopCatalogue, touchpoints: Touchpoints, store: CustomerStore, log: EventLog,
                 served: ServedView, config: PipelineConfig, metrics: ShopMetrics,
                 examples: Sequence[str] = (), clock: Callable[[], float] = time.time,
                 router: ExperimentRouter | None = None, rng: random.Random | None = None) -> None:
        self.catalogue, self.touchpoints, self.store, self.log = catalogue, touchpoints, store, log
        self.served, self.config, self.metrics, self.router = served, config, metrics, router
        self._online, self._examples, self._clock = config.online, list(examples), clock
        self._impressions = ImpressionBuffer(log)  # shown, not yet in the log (flush_impressions)
        self._histories: dict[tuple[object, ...], History | None] = {}  # (stored version, view version) -> built
        self._rng = rng or random.Random()  # exploration's draws

    def categories(self) -> list[str]:
        return self.catalogue.categories()

    def example_customers(self, count: int) -> list[str]:
        return self._examples[:count]

    def devices(self) -> tuple[str, ...]:
        return self.config.ingest.devices

    def context(self, device: str | None, region: str | None, local_time: str | None) -> PageContext:
        return page_context(device, region, local_time, self.config.ingest, self._clock())

    # -- pages ----------------------------------------------------------------------------------------
    async def homepage(self, visitor: Visitor, context: PageContext = NO_CONTEXT) -> Homepage:
        events, route = await self.store.history(visitor.key), self.route(visitor.events_customer_id)
        history, seen = self._history(events, route.view), {e.product_id for e in events}
        plans = self._plans(events, history, route, context)
        size, request_id, policy = self._online.carousel_size, uuid.uuid4().hex, self._policy(route)
        # each later carousel asks for more: products already on the page are left out of it
        answers = await asyncio.gather(*(self._ask(plan, policy.ranked_needed(size * (i + 1)))
                                         for i, plan in enumerate(plans)))
        shown: set[str] = set()
        carousels, shows = [], []
        for plan, answer in zip(plans, answers, strict=True):
            if answer.ranked is None:
                ids, scores, show = route.view.trending_among(plan.allowed, seen | shown, size), None, None
            else:
                show = self._shown(answer.ranked, size, policy, shown)
                ids, scores = list(show.product_ids), _scores_of(answer.ranked, show.product_ids)
            shown.update(ids)
            shows.append(show)
            carousels.append(Carousel(plan.name, plan.title, self.catalogue.cards_of(ids, scores), answer.fallback))
        self._log_impressions(request_id, visitor, carousels, answers, route, shows, context)
        return Homepage(visitor, tuple(c for c in carousels if c.products), request_id, route.view.version,
                        personalised=history is not None, history_events=len(events))

    async def recommendations(self, visitor: Visitor, k: int, candidate_set: str | None = None,
                              context: PageContext = NO_CONTEXT) -> Carousel:
        """One carousel, *for you* (or among a published candidate set): a single Triton call, for sites that
        compose their own pages (emails, apps)."""
        route = self.route(visitor.events_customer_id)
        if candidate_set is not None and candidate_set not in route.view.candidate_sets:
            raise NotFound(f"unknown candidate set {candidate_set[:64]!r}; published: "
                           f"{sorted(route.view.candidate_sets)}")
        if not 1 <= k <= self.config.serving.max_top_k:
            raise BadInput(f"k must be within 1..{self.config.serving.max_top_k}, got {k}")
        events = await self.store.history(visitor.key)
        history = self._history(events, route.view)
        options = {"candidate_set": candidate_set} if candidate_set else {}
        allowed = route.view.candidate_sets.get(candidate_set) if candidate_set else None
        ask = (lambda n: self.touchpoints.recommend(history, n, route.version, exclude_seen=True,
                                                    context=context.request, **options)) if history else None
        name, policy = candidate_set or "for_you", self._policy(route)
        answer = await self._ask(_Plan(name, name, ask, allowed), policy.ranked_needed(k))
        show = self._shown(answer.ranked, k, policy) if answer.ranked else None
        ids = list(show.product_ids) if show else route.view.trending_among(allowed, {e.product_id for e in events}, k)
        scores = _scores_of(answer.ranked, ids) if answer.ranked else None
        carousel = Carousel(name, "For you" if not candidate_set else candidate_set,
                            self.catalogue.cards_of(ids, scores), answer.fallback)
        self._log_impressions(uuid.uuid4().hex, visitor, [carousel], [answer], route, [show], context)
        return carousel

    async def category_page(self, visitor: Visitor, category: str, page: int, page_size: int,
                            context: PageContext = NO_CONTEXT) -> ProductList:
        products = self.catalogue.in_category(category)
        return await self._ordered(visitor, f"category:{category}", category.title(), [list(products)], page,
                                   page_size, context)

    async def search(self, visitor: Visitor, query: str, page: int, page_size: int,
                     context: PageContext = NO_CONTEXT) -> ProductList:
        query = query.strip()
        if not query:
            raise BadInput("the search query is empty")
        if len(query) > self._online.max_query_length:
            raise BadInput(f"the search query has {len(query)} characters; at most {self._online.max_query_length}")
        return await self._ordered(visitor, "search", f"Results for “{query}”", self.catalogue.search_tiers(query),
                                   page, page_size, context)

    async def product_page(self, visitor: Visitor, product_id: str, alpha: float | None = None,
                           context: PageContext = NO_CONTEXT) -> ProductPage:
        card = self.catalogue.card(product_id)
        events, route = await self.store.history(visitor.key), self.route(visitor.events_customer_id)
        size, request_id = self._online.carousel_size, uuid.uuid4().hex
        same_category = self.catalogue.category_set(card.category)
        plan = _Plan("similar", "You may also like", None, same_category)
        alpha = route.similar_alpha if alpha is None else alpha  # an arm may test another blend
        if product_id in route.view.product_ids:
            history = self._history(events, route.view) or History([])
            plan = _Plan("similar", "You may also like",
                         lambda k: self.touchpoints.similar(product_id, history, k, route.version, alpha=alpha,
                                                            exclude_seen=True, context=context.request),
                         same_category)
        policy = self._policy(route)
        answer = await self._ask(plan, policy.ranked_needed(size))
        excluded = {e.product_id for e in events} | {product_id}
        show = self._shown(answer.ranked, size, policy) if answer.ranked else None
        ids = list(show.product_ids) if show else route.view.trending_among(same_category, excluded, size)
        scores = _scores_of(answer.ranked, ids) if answer.ranked else None
        carousel = Carousel("similar", plan.title, self.catalogue.cards_of(ids, scores), answer.fallback)
        self._log_impressions(request_id, visitor, [carousel], [answer], route, [show], context)
        return ProductPage(card, carousel, request_id)

    # -- events ---------------------------------------------------------------------------------------
    async def post_events(self, visitor: Visitor | None, events: list[dict[str, object]]) -> EventReceipt:
        if len(events) > self._online.max_events_per_batch:
            raise TooLarge(f"{len(events)} events in one batch; at most {self._online.max_events_per_batch}")
        rows = [self._owned(event, visitor) for event in events]
        # the batch's catalogue products: ingest's check needs no set of the whole catalogue per request
        known = {row["product_id"] for row in rows if row.get("product_id") in self.catalogue.cards}
        accepted, rejected = check_events(rows, known, self.config.ingest, self._online, self._clock())
        if accepted:
            refused = {rejection.index for rejection in rejected}
            kept = [row for i, row in enumerate(rows) if i not in refused]  # the accepted events' posted rows
            records = [self._logged_event(event, row) for event, row in zip(accepted, kept, strict=True)]
            await asyncio.to_thread(self.log.append, "events", records)
            await self._remember(accepted)
        self.metrics.events.labels("accepted").inc(len(accepted))
        for rejection in rejected:
            self.metrics.events.labels(rejection.reason).inc()
        return EventReceipt(len(accepted), tuple(rejected))

    async def flush_impressions(self) -> int:
        """Write the impressions shown since the last flush to the log, in one append (the service flushes
        every second and at shutdown). Returns how many were written."""
        return await self._impressions.flush()

    async def close(self) -> None:
        """The last impressions into the log, after any flush still appending (:class:`ImpressionBuffer`)."""
        await self._impressions.close()

    # -- plumbing -------------------------------------------------------------------------------------
    def route(self, unit: str) -> Route:
        """The version that answers visitor ``unit`` (customer id or ``session:<id>``) now: their experiment
        arm's, or the served one."""
        return self.router.route(unit, self.served) if self.router else Route(self.served)

    def _logged_event(self, event: ShopEvent, posted: Mapping[str, object]) -> dict[str, object]:
        """An accepted event as logged: tagged with the page it came from, the visitor's arm, if any, and its
        context (device, channel, region, local time) as posted."""
        route = self.route(event.customer_id)
        request_id = posted.get("request_id")
        return {**event.as_record(), "request_id": str(request_id) if request_id else None,
                "experiment": route.experiment, "arm": route.arm_name, **context_of(posted)}

    def _history(self, events: Sequence[ShopEvent], view: ServedView) -> History | None:
        """The stored events ``view``'s version knows, as a request history (None: nothing to personalise with).
        Built once per version of the stored events and served view (a visitor's pages read the same history
        again and again between events), then only its request time changes."""
        version = (getattr(events, "version", None), view.version)
        if version in self._histories:  # None too: a history the view knows nothing of is kept as such
            kept = self._histories[version]
        else:
            known = [e for e in events if e.product_id in view.product_ids]
            # tuples: the collector stops tracking a tuple of strings or numbers, never a list
            kept = History(tuple(e.product_id for e in known), tuple(e.event_type for e in known),
                           tuple(int(e.timestamp) for e in known)) if known else None
            if version[0] is not None:
                self._keep_history(version, kept)
        return None if kept is None else dataclasses.replace(kept, request_time=int(self._clock()))

    def _keep_history(self, version: tuple[object, ...], history: History | None) -> None:
        """Keep a built history, the longest-kept one dropped past ``online.kept_histories``."""
        if len(self._histories) >= self._online.kept_histories:
            self._histories.pop(next(iter(self._histories)))
        self._histories[version] = history

    def _plans(self, events: Sequence[ShopEvent], history: History | None, route: Route,
               context: PageContext) -> list[_Plan]:
        """The homepage's carousels, in page order (each Triton call with the page's context)."""
        def recommend(**options: object) -> Callable[[int], Awaitable[Ranked]] | None:
            if history is None:
                return None
            return lambda k: self.touchpoints.recommend(history, k, route.version, exclude_seen=True,
                                                        context=context.request, **options)

        plans = [_Plan("for_you", "For you", recommend())] if history is not None else []
        sets = route.view.candidate_sets
        plans += [_Plan(name, title, recommend(candidate_set=name), sets[name])
                  for name, title in FIXED_CAROUSELS[:1] if sets.get(name)]
        plans.append(_Plan("trending", "Trending now", None))
        plans += [_Plan(name, title, recommend(candidate_set=name), sets[name])
                  for name, title in FIXED_CAROUSELS[1:] if sets.get(name)]
        for category in self.catalogue.favourite_categories([e.product_id for e in events],
                                                            [e.weight for e in events], self._online.category_carousels):
            name = f"{CATEGORY_SET_PREFIX}{category}"
            members = self.catalogue.category_set(category)  # only served products trend: none other is chosen
            if name in sets:  # published with the version: the request names the set instead of listing ids
                plans.append(_Plan(name, f"More {category}", recommend(candidate_set=name), members))
                continue
            candidates = route.view.trending_among(members, set(), min(self._online.category_carousel_candidates,
                                                                       self.config.serving.max_candidates))
            if candidates:
                plans.append(_Plan(name, f"More {category}", recommend(candidates=candidates), members))
        return plans

    async def _ask(self, plan: _Plan, k: int) -> _Answer:
        """Triton's ranking for a plan of ``k`` products; a failure is counted and answered with the fallback."""
        if plan.ask is None:
            return _Answer()
        try:
            return _Answer(await plan.ask(min(k, self.config.serving.max_top_k)))
        except (TritonUnavailable, TritonRefused) as error:
            kind = "refused" if isinstance(error, TritonRefused) else "unavailable"
            self.metrics.triton_errors.labels(plan.name.split(":")[0], kind).inc()
            self.metrics.fallbacks.labels(plan.name.split(":")[0]).inc()
            return _Answer(fallback=True)

    async def _ordered(self, visitor: Visitor, touchpoint: str, title: str, tiers: list[list[str]], page: int,
                       page_size: int, context: PageContext) -> ProductList:
        """Products (in tiers of relevance) personally ordered within the first tier, then paged."""
        if page < 1 or not 1 <= page_size <= self._online.max_page_size:
            raise BadInput(f"page must be >= 1 and page_size within 1..{self._online.max_page_size}")
        head = tiers[0] if tiers else []
        rest = [p for tier in tiers[1:] for p in tier]
        events, route = await self.store.history(visitor.key), self.route(visitor.events_customer_id)
        ordered, ranked, fallback = await self._personal_order(head, self._history(events, route.view), touchpoint,
                                                               route, context)
        products = ordered + rest
        start = (page - 1) * page_size
        chosen = products[start: start + page_size]
        scores = dict(zip(ranked.product_ids, ranked.scores, strict=True)) if ranked else {}
        cards = tuple(self.catalogue.cards_of(chosen, [scores.get(p, math.nan) for p in chosen]))
        request_id = uuid.uuid4().hex
        carousel = Carousel(touchpoint, title, cards, fallback)
        self._log_impressions(request_id, visitor, [carousel], [_Answer(ranked, fallback)], route, [None], context)
        return ProductList(title, cards, page, page_size, len(products), request_id, fallback)

    async def _personal_order(self, products: list[str], history: History | None, touchpoint: str,
                              route: Route, context: PageContext) -> tuple[list[str], Ranked | None, bool]:
        """``products`` reranked for the history (the served ones, the ``online.rerank_candidates`` most trending;
        the others after them in trending order), or in trending order without a history or when Triton fails."""
        rank = route.view.trend_rank
        by_trend = sorted(products, key=lambda p: rank.get(p, len(rank)))
        limit = min(self._online.rerank_candidates, self.config.serving.max_candidates)
        served = [p for p in by_trend if p in route.view.product_ids][:limit]
        if history is None or not served:
            return by_trend, None, False
        answer = await self._ask(_Plan(touchpoint, touchpoint,
                                       lambda _: self.touchpoints.rerank(history, served, route.version,
                                                                         context.request)), 0)
        if answer.ranked is None:
            return by_trend, None, answer.fallback
        placed = set(answer.ranked.product_ids)
        return list(answer.ranked.product_ids) + [p for p in by_trend if p not in placed], answer.ranked, False

    @staticmethod
    def _owned(event: dict[str, object], visitor: Visitor | None) -> dict[str, object]:
        """The event as logged: a visitor's events carry its id; an API event names a customer or session."""
        row = dict(event)
        if visitor is not None:
            row["customer_id"] = visitor.events_customer_id
        elif row.get("customer_id") is None and row.get("session_id") is not None:
            row["customer_id"] = f"{SESSION_PREFIX}{row['session_id']}"
        row.pop("session_id", None)
        return row

    async def _remember(self, events: Sequence[ShopEvent]) -> None:
        """Add accepted events to each one's live state (sessions expire ``anonymous_ttl_days`` after)."""
        by_key: dict[str, list[ShopEvent]] = {}
        for event in events:
            by_key.setdefault(store_key(event.customer_id), []).append(event)
        ttl = self._online.anonymous_ttl_days * SECONDS_PER_DAY
        await asyncio.gather(*(self.store.append(key, batch, ttl if key.startswith(SESSION_PREFIX) else None)
                               for key, batch in by_key.items()))

    def _policy(self, route: Route) -> ExplorationPolicy:
        """The exploration policy of a route: the service's, with its arm's share when the arm sets one."""
        share = route.exploration_share
        return ExplorationPolicy(self._online.exploration_share if share is None else share,
                                 self._online.exploration_positions, self._online.exploration_pool,
                                 self._online.exploration_mode)

    def _shown(self, ranked: Ranked, size: int, policy: ExplorationPolicy,
               shown: set[str] | frozenset[str] = frozenset()) -> Shown:
        """A model-ranked carousel of ``size`` as the exploration policy shows it (products already on the page
        left out first)."""
        return policy.show([p for p in ranked.product_ids if p not in shown], size, self._rng)

    def _log_impressions(self, request_id: str, visitor: Visitor, carousels: Sequence[Carousel],
                         answers: Sequence[_Answer], route: Route, shows: Sequence[Shown | None],
                         context: PageContext) -> None:
        """One impression record per carousel shown (tagged with the visitor's experiment arm, if any, and the
        page's context; with each product's propensity and the explored slot when the model ranked it), written
        by the next :meth:`flush_impressions`."""
        now = self._clock()
        records = [{"request_id": request_id, "timestamp": now, "customer_id": visitor.events_customer_id,
                    "touchpoint": carousel.name,
                    "model_version": answer.ranked.model_version if answer.ranked else route.view.version,
                    "product_ids": [c.product_id for c in carousel.products],
                    "positions": list(range(1, len(carousel.products) + 1)),
                    "scores": [c.score if c.score is not None else math.nan for c in carousel.products],
                    "fallback": carousel.fallback, "experiment": route.experiment, "arm": route.arm_name,
                    "propensities": _propensities(carousel, show),
                    "explored_slot": show.explored_slot if show else None,
                    "shuffled_slots": show.shuffled_slots if show else None, **context.logged}
                   for carousel, answer, show in zip(carousels, answers, shows, strict=True) if carousel.products]
        self._impressions.add(records)


def _scores_of(ranked: Ranked, product_ids: Sequence[str]) -> list[float]:
    scores = dict(zip(ranked.product_ids, ranked.scores, strict=True))
    return [scores[p] for p in product_ids]


def _propensities(carousel: Carousel, show: Shown | None) -> list[float] | None:
    """Each shown card's propensity (None: not ranked by the model, so no policy to weigh by)."""
    if show is None:
        return None
    of = dict(zip(show.product_ids, show.propensities, strict=True))
    return [of[card.product_id] for card in carousel.products]
