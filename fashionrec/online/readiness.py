"""Readiness that means "pages can be answered", with a canary through every touchpoint.

Triton's own ready flag is not enough (it can stay false after a refused version while every ensemble
answers, and true while an ensemble is unloaded), so the service asks each touchpoint a real question
with a served product (``recommend``, ``rerank``, ``similar``) and pings its state store. The service is
ready when its store answers: without Triton the pages still come, from the trending list. A failed
canary marks it ``degraded`` (and not ready under ``strict``). Results are cached for
``online.readiness_cache_s`` so probes do not load Triton.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from fashionrec.online.pages import ShopService
from fashionrec.online.store import StoreUnavailable
from fashionrec.online.triton import TritonRefused, TritonUnavailable
from fashionrec.serving import requests

OK = "ok"


@dataclass(frozen=True)
class ReadinessReport:
    serving: bool  # the state store answers: pages can be served (perhaps from the fallback)
    touchpoints_ok: bool  # every touchpoint answered its canary
    degraded: bool  # serving, but some page would fall back
    model_version: int | None
    checks: dict[str, str] = field(default_factory=dict)  # "store", "recommend", ...: "ok" or the reason


class Readiness:
    def __init__(self, shop: ShopService, cache_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._shop, self._cache_s, self._clock = shop, cache_s, clock
        self._last: tuple[float, ReadinessReport] | None = None

    async def check(self) -> ReadinessReport:
        """The cached report, or a fresh one when it is older than the cache time."""
        now = self._clock()
        if self._last is None or now - self._last[0] >= self._cache_s:
            self._last = (now, await self._fresh())
        return self._last[1]

    async def _fresh(self) -> ReadinessReport:
        canaries = self._canaries()
        names = ["store", *canaries]
        results = await asyncio.gather(self._store(), *(_outcome(c()) for c in canaries.values()))
        checks = dict(zip(names, results, strict=True))
        if not canaries:
            checks["model"] = "no published version to ask"
        serving = checks["store"] == OK
        touchpoints_ok = bool(canaries) and all(checks[name] == OK for name in canaries)
        return ReadinessReport(serving, touchpoints_ok, serving and not touchpoints_ok, self._shop.served.version,
                               checks)

    def _canaries(self) -> dict[str, Callable[[], Awaitable[object]]]:
        """One question per touchpoint (the same the Triton pods' canary asks), about the most trending
        served products; by touchpoint model name."""
        trending, touchpoints = self._shop.served.trending, self._shop.touchpoints
        if not trending:
            return {}
        questions = requests.canary_questions(trending[:2], self._shop.config.serving)
        return {model: partial(touchpoints.ask, model, tensors) for model, tensors in questions.items()}

    async def _store(self) -> str:
        try:
            await self._shop.store.ping()
            return OK
        except StoreUnavailable as error:
            return str(error)


async def _outcome(call: Awaitable[object]) -> str:
    try:
        await call
        return OK
    except (TritonUnavailable, TritonRefused) as error:
        return str(error)[:200]
