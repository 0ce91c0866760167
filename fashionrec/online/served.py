"""What the service needs of the served model version: its product ids, candidate sets and trending list.

The trending list (products by the served popularity prior) is the fallback of every page: when Triton is
down or slow the service still answers, from memory, with what is in demand now, and says so. The view
follows the repository's manifest: :meth:`ServedView.refreshed` reloads it only when the serving version
changes (a publish or a rollback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from fashionrec.config import ServingConfig
from fashionrec.repository.manifest import read_manifest, serving_version
from fashionrec.repository.served import served_version

MAX_CACHED_ORDERS = 256  # trending orders within sets kept per view (categories and candidate sets, with room)


@dataclass(frozen=True)
class ServedView:
    """The served version's products, its trending order and its candidate sets (empty before a publish)."""

    version: int | None = None
    product_ids: frozenset[str] = frozenset()
    trending: tuple[str, ...] = ()  # every served product, highest prior first (ties: catalogue order)
    candidate_sets: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def read(cls, model_repository: str, serving: ServingConfig, version: int | None = None) -> ServedView:
        """The served version's view, or published ``version``'s (an experiment arm's)."""
        served = served_version(model_repository, serving, version)
        if served is None:
            return cls()
        prior = served.prior if served.prior is not None else np.zeros(len(served.product_ids), np.float32)
        order = np.argsort(-prior, kind="stable")
        return cls(served.version, frozenset(served.product_ids), tuple(served.product_ids[i] for i in order),
                   {name: frozenset(ids) for name, ids in served.candidate_sets.items()})

    def refreshed(self, model_repository: str, serving: ServingConfig) -> ServedView:
        """This view, or the served version's when the manifest now names another one."""
        if serving_version(read_manifest(model_repository)) == self.version:
            return self
        return ServedView.read(model_repository, serving)

    @cached_property
    def trend_rank(self) -> dict[str, int]:
        """Each served product's place in :attr:`trending` (0: most trending), once per view."""
        return {pid: rank for rank, pid in enumerate(self.trending)}

    def trending_among(self, allowed: frozenset[str] | set[str] | None, excluded: set[str], count: int) -> list[str]:
        """The ``count`` most trending products in ``allowed`` (None: any) and not in ``excluded``."""
        chosen: list[str] = []
        for pid in self.trending if allowed is None else self._trending_within(allowed):
            if len(chosen) == count:
                break
            if pid not in excluded:
                chosen.append(pid)
        return chosen

    @cached_property
    def _orders(self) -> dict[frozenset[str], tuple[str, ...]]:
        """The trending order within each set asked for (a category, a candidate set), once per view and set."""
        return {}

    def _trending_within(self, allowed: frozenset[str] | set[str]) -> tuple[str, ...]:
        """The served products of ``allowed``, most trending first. A category carousel asks for its 500 most
        trending products on every homepage: walking the whole trending list for them cost more CPU than the
        rest of the page, so a frozen set's order is kept (at most ``MAX_CACHED_ORDERS`` sets; the catalogue
        hands out new sets when it grows, so the oldest are dropped)."""
        order = self._orders.get(allowed) if isinstance(allowed, frozenset) else None
        if order is None:
            rank = self.trend_rank
            order = tuple(sorted((pid for pid in allowed if pid in rank), key=rank.__getitem__))
            if isinstance(allowed, frozenset):
                if len(self._orders) >= MAX_CACHED_ORDERS:
                    del self._orders[next(iter(self._orders))]
                self._orders[allowed] = order
        return order
