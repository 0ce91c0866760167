"""The products the shop shows: display fields, categories and a text index for search.

Read from the retailer's catalogue in the canonical schema (the file ingest reads; rows are checked by
ingest's own rules, so the shop shows exactly the products the pipeline trains on) and held in memory:
~100 bytes a product plus the index, so a million products fit a service replica.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property

import pandas as pd

from fashionrec import storage
from fashionrec.online.views import NotFound, ProductCard
from fashionrec.stages.ingest import validate_catalogue

TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
SEARCHED_FIELDS = ("title", "description", "brand", "colour", "category")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (letters and digits) of a text."""
    return TOKEN.findall(text.lower())


@dataclass(frozen=True)
class ShopCatalogue:
    """Products by id (in catalogue order), each category's products, and a word → products index."""

    cards: dict[str, ProductCard]
    by_category: dict[str, tuple[str, ...]]
    index: dict[str, frozenset[str]]
    position: dict[str, int]  # each product's row in the catalogue

    @classmethod
    def load(cls, uri: str) -> ShopCatalogue:
        """The canonical catalogue at ``uri`` (CSV or Parquet, local or gs://); rows ingest would
        quarantine are left out."""
        catalogue, _ = validate_catalogue(storage.read_table(uri), uri)
        return cls.from_frame(catalogue)

    @classmethod
    def from_frame(cls, catalogue: pd.DataFrame) -> ShopCatalogue:
        """From ingest's validated catalogue columns."""
        shown = catalogue[["product_id", "title", "category", "colour", "brand", "price", "description"]]
        cards = {row.product_id: ProductCard(row.product_id, row.title, row.category, row.colour, row.brand,
                                             float(row.price), row.description)
                 for row in shown.itertuples(index=False)}
        by_category: dict[str, list[str]] = {}
        index: dict[str, set[str]] = {}
        for card in cards.values():
            by_category.setdefault(card.category, []).append(card.product_id)
            for word in set(tokens(" ".join(getattr(card, name) for name in SEARCHED_FIELDS))):
                index.setdefault(word, set()).add(card.product_id)
        return cls(cards, {c: tuple(ids) for c, ids in by_category.items()},
                   {word: frozenset(ids) for word, ids in index.items()}, {pid: row for row, pid in enumerate(cards)})

    def extended(self, products: pd.DataFrame) -> ShopCatalogue:
        """A new catalogue: this one's products, then those of ``products`` (ingest's validated catalogue columns)
        it does not hold yet, in their order (ids it holds are left as they are). This one is left unchanged
        (a page being built keeps reading it, caches included); the new one shares its unchanged parts and
        builds its own caches. Cost: a copy of the id maps, and a new word set for each word the new products
        use (a common word's set is as large as its products), not a rebuild of the index."""
        new = products[[pid not in self.cards for pid in products["product_id"]]].drop_duplicates("product_id")
        if new.empty:
            return self
        added = ShopCatalogue.from_frame(new)
        by_category = dict(self.by_category)
        for category, ids in added.by_category.items():
            by_category[category] = by_category.get(category, ()) + ids
        index = dict(self.index)
        for word, ids in added.index.items():
            index[word] = index[word] | ids if word in index else ids
        offset = len(self.cards)
        return ShopCatalogue({**self.cards, **added.cards}, by_category, index,
                             {**self.position, **{pid: offset + row for pid, row in added.position.items()}})

    def card(self, product_id: str) -> ProductCard:
        try:
            return self.cards[product_id]
        except KeyError:
            raise NotFound(f"unknown product {product_id[:64]!r}") from None

    def cards_of(self, product_ids: Iterable[str], scores: Sequence[float] | None = None) -> tuple[ProductCard, ...]:
        """The known products' cards in the given order (with their scores, when given)."""
        ids = list(product_ids)
        values = list(scores) if scores is not None else [None] * len(ids)
        return tuple(_scored(self.cards[pid], score) for pid, score in zip(ids, values, strict=True)
                     if pid in self.cards)

    def categories(self) -> list[str]:
        """Every category, largest first (ties by name)."""
        return sorted(self.by_category, key=lambda name: (-len(self.by_category[name]), name))

    @cached_property
    def category_sets(self) -> dict[str, frozenset[str]]:
        """Each category's products as a set, made once (pages ask "is it in the category?" per request)."""
        return {category: frozenset(ids) for category, ids in self.by_category.items()}

    def category_set(self, category: str) -> frozenset[str]:
        self.in_category(category)  # NotFound for an unknown category
        return self.category_sets[category]

    def in_category(self, category: str) -> tuple[str, ...]:
        if category not in self.by_category:
            raise NotFound(f"unknown category {category[:64]!r}")
        return self.by_category[category]

    def search_tiers(self, query: str) -> list[list[str]]:
        """Products matching the query's words, in tiers: those with every known word first, then those
        with one word fewer, and so on (catalogue order within a tier); no word known → no tier."""
        words = [w for w in dict.fromkeys(tokens(query)) if w in self.index]
        matches = Counter(pid for word in words for pid in self.index[word])
        tiers: dict[int, list[str]] = {}
        for pid in sorted(matches, key=self.position.__getitem__):  # the matches only, not the catalogue
            tiers.setdefault(matches[pid], []).append(pid)
        return [tiers[count] for count in sorted(tiers, reverse=True)]

    def favourite_categories(self, product_ids: Iterable[str], weights: Iterable[float], count: int) -> list[str]:
        """The ``count`` categories a history weighs most in (ties: the category seen last wins)."""
        totals: dict[str, float] = {}
        for pid, weight in zip(product_ids, weights, strict=True):
            if pid in self.cards:
                category = self.cards[pid].category
                totals[category] = totals.pop(category, 0.0) + weight  # re-inserted: the last seen sorts last
        position = {category: i for i, category in enumerate(totals)}
        return sorted(totals, key=lambda c: (totals[c], position[c]), reverse=True)[:count]


def _scored(card: ProductCard, score: float | None) -> ProductCard:
    if score is None:
        return card
    return ProductCard(card.product_id, card.title, card.category, card.colour, card.brand, card.price,
                       card.description, score)
