"""Exploration: a randomised share of carousels, and every shown product's propensity.

Why: a log of what the model chose to show says little about what it did not show, and clicks on it
mix relevance with position (the top slot is looked at most). A small, known randomisation fixes both.
A share ``share`` of carousels is explored, in one of two modes:

* ``insert`` (a randomised slot): one slot, drawn uniformly from ``positions``, shows a product drawn
  uniformly from the ``pool`` products ranked just beyond the carousel; the products from that slot on
  move one place down and the last one drops out. The explored product is independent of the slot, so
  its click rate by slot traces the examination curve, and less exposed products get unbiased feedback.
* ``shuffle`` (RandTop-n, Joachims, Swaminathan and Schnabel 2017): the carousel's first
  n = max(``positions``) products (or all, if fewer) are shown in a uniformly random order. Which
  product lands in a slot is then independent of the slot, so the click rate at *every* one of the n
  slots traces the curve: n observations per explored carousel where ``insert`` gives one, for the same
  share of traffic, and only the model's own top products are shown.

Every shown product's **propensity** is logged with it: the probability that this policy shows that
product at that position, given the ranking. For the ranked product at rank r (1-based) shown at p,
under ``insert``:

    P(r at p) = (1 - share) [p = r] + share / |positions| * #{s in positions : p = (r if r < s else r + 1)}

and for the explored product at slot s, ``share / |positions| / pool``; under ``shuffle``, for r and p
both within the first n: ``(1 - share) [p = r] + share / n`` (a product ranked beyond n stays where it
is: 1). Off (``share`` 0) every ranked product's propensity is 1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from fashionrec.config import EXPLORATION_MODES


@dataclass(frozen=True)
class Shown:
    """A carousel as shown: product ids in slot order, each one's propensity, and how it was explored: the
    inserted slot (1-based) or the number of leading slots shown shuffled (None when not explored so)."""

    product_ids: tuple[str, ...]
    propensities: tuple[float, ...]
    explored_slot: int | None = None
    shuffled_slots: int | None = None


@dataclass(frozen=True)
class ExplorationPolicy:
    """``share`` of carousels explored by ``mode``. ``insert``: the slot uniform over ``positions`` (1-based),
    the product uniform over the ``pool`` products ranked just beyond the carousel. ``shuffle``: the first
    max(``positions``) products in a uniformly random order."""

    share: float = 0.0
    positions: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    pool: int = 50
    mode: str = "insert"

    def __post_init__(self) -> None:
        if not 0.0 <= self.share <= 1.0:
            raise ValueError(f"the exploration share must be within [0, 1], got {self.share}")
        if not self.positions or min(self.positions) < 1 or len(set(self.positions)) != len(self.positions):
            raise ValueError(f"exploration positions must be distinct slots from 1, got {list(self.positions)}")
        if self.pool < 1:
            raise ValueError(f"the exploration pool must hold at least one product, got {self.pool}")
        if self.mode not in EXPLORATION_MODES:
            raise ValueError(f"the exploration mode must be one of {EXPLORATION_MODES}, got {self.mode!r}")

    def ranked_needed(self, size: int) -> int:
        """How many ranked products a carousel of ``size`` needs: the pool beyond it too, when inserting."""
        return size + self.pool if self.share and self.mode == "insert" else size

    def show(self, ranked: Sequence[str], size: int, rng: random.Random) -> Shown:
        """The carousel of ``size`` slots from ``ranked`` (best first; under ``insert`` the products beyond
        ``size`` are the pool)."""
        if self.mode == "shuffle":
            return self._shuffled(list(ranked[:size]), rng)
        top, beyond = list(ranked[:size]), list(ranked[size:size + self.pool])
        slots = self._slots(len(top))
        if not beyond or not slots or rng.random() >= self.share:
            return Shown(tuple(top), self.propensities(len(top), len(beyond)))
        slot = rng.choice(slots)
        explored = rng.choice(beyond)
        shown = top[:slot - 1] + [explored] + top[slot - 1:len(top) - 1]
        ranks = [*range(1, slot), None, *range(slot, len(top))]  # None: the explored product
        weights = [self._explored(len(beyond), len(top)) if r is None else self._ranked(r, p, len(top))
                   for p, r in enumerate(ranks, start=1)]
        return Shown(tuple(shown), tuple(weights), slot)

    def _shuffled(self, top: list[str], rng: random.Random) -> Shown:
        """RandTop-n: with probability ``share`` the first n products in a uniformly random order."""
        n = min(len(top), max(self.positions))
        if n < 2:  # nothing to shuffle: never explored
            return Shown(tuple(top), tuple(1.0 for _ in top))
        if rng.random() >= self.share:
            return Shown(tuple(top), self._shuffle_propensities(top, top, n))
        head = top[:n]
        rng.shuffle(head)
        shown = head + top[n:]
        return Shown(tuple(shown), self._shuffle_propensities(top, shown, n), shuffled_slots=n)

    def _shuffle_propensities(self, ranked: list[str], shown: list[str], n: int) -> tuple[float, ...]:
        """P(each shown product at its slot) under ``shuffle``: (1 - share)[p = r] + share / n within the first
        n slots, 1 beyond them."""
        rank = {pid: r for r, pid in enumerate(ranked, start=1)}
        return tuple((1.0 - self.share) * (rank[pid] == p) + self.share / n if p <= n else 1.0
                     for p, pid in enumerate(shown, start=1))

    def propensities(self, size: int, pool: int) -> tuple[float, ...]:
        """The propensities of an unexplored ``insert`` carousel's products (rank r shown at slot r)."""
        if not pool or not self._slots(size):  # nothing beyond the carousel, or no slot: never explored
            return tuple(1.0 for _ in range(size))
        return tuple(self._ranked(r, r, size) for r in range(1, size + 1))

    def _slots(self, size: int) -> list[int]:
        return [s for s in self.positions if s <= size]

    def _ranked(self, rank: int, position: int, size: int) -> float:
        """P(the product ranked ``rank`` is shown at ``position``) in a carousel of ``size`` slots."""
        slots = self._slots(size)
        moved = sum(position == (rank if rank < s else rank + 1) for s in slots)
        return (1.0 - self.share) * (position == rank) + (self.share * moved / len(slots) if slots else 0.0)

    def _explored(self, pool: int, size: int) -> float:
        return self.share / len(self._slots(size)) / pool
