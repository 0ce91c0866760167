"""Holdout slices: the customers and target products where a recommender most often fails.

Each slice keeps the customers with at least one relevant target and only those targets, so a slice
metric answers "how well are *these* products / customers served": cold-start products (never seen in
training), new customers (short histories), each of the largest product categories, and the head,
torso and tail of the popularity distribution, and, where the holdout carries context, the customers
by the device, region and time of day of their first holdout event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from fashionrec.config import EvaluateConfig


class HoldoutCustomers(Protocol):
    """What slicing reads of the evaluated customers (``EvalExamples`` or the ranking job's rows)."""

    @property
    def target_idxs(self) -> list[np.ndarray]: ...

    @property
    def history_lengths(self) -> np.ndarray: ...

    @property
    def context(self) -> dict[str, np.ndarray]: ...

POPULARITY_BUCKETS = {"head": (0.9, 1.01), "torso": (0.5, 0.9), "tail": (0.0, 0.5)}  # popularity percentile
DAYPARTS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}  # local hours [low, high)


@dataclass(frozen=True)
class Slice:
    name: str
    customers: np.ndarray  # positions in the evaluated examples
    targets: list[np.ndarray]  # each such customer's targets inside the slice


def holdout_slices(
    examples: HoldoutCustomers, is_new: np.ndarray, categories: np.ndarray, popularity: np.ndarray,
    config: EvaluateConfig,
) -> list[Slice]:
    """Every slice with at least one customer."""
    percentile = np.argsort(np.argsort(popularity, kind="stable"), kind="stable") / max(len(popularity) - 1, 1)
    product_slices = {"cold_start_products": is_new}
    for bucket, (low, high) in POPULARITY_BUCKETS.items():
        product_slices[f"popularity:{bucket}"] = (percentile >= low) & (percentile < high)
    target_categories = categories[np.concatenate(examples.target_idxs)] if examples.target_idxs else []
    names, counts = np.unique(target_categories, return_counts=True)
    for category in names[np.argsort(-counts, kind="stable")][: config.max_category_slices]:
        product_slices[f"category:{category}"] = categories == category
    found = [_product_slice(name, examples, member) for name, member in product_slices.items()]
    found.append(_new_customers(examples, config.new_customer_max_history))
    found += context_slices(examples)
    return [s for s in found if len(s.customers)]


def context_slices(examples: HoldoutCustomers) -> list[Slice]:
    """The customers by the context of their first holdout event (the request a context model would be
    asked): ``device:<value>``, ``region:<value>`` and ``daypart:<night|morning|afternoon|evening>`` of
    the local hour; unknown values make no slice."""
    found = []
    for feature in ("device", "region"):
        values = examples.context.get(feature, np.array([], object))
        found += [_customer_slice(f"{feature}:{value}", examples, values == value)
                  for value in sorted(set(values) - {""})]
    hours = examples.context.get("hour", np.array([], np.int64))
    for name, (low, high) in DAYPARTS.items():
        found.append(_customer_slice(f"daypart:{name}", examples, (hours >= low) & (hours < high)))
    return [s for s in found if len(s.customers)]


def _customer_slice(name: str, examples: HoldoutCustomers, member: np.ndarray) -> Slice:
    customers = np.flatnonzero(member)
    return Slice(name, customers, [examples.target_idxs[i] for i in customers])


def _product_slice(name: str, examples: HoldoutCustomers, member: np.ndarray) -> Slice:
    restricted = [t[member[t]] for t in examples.target_idxs]
    customers = np.flatnonzero([len(t) > 0 for t in restricted])
    return Slice(name, customers, [restricted[i] for i in customers])


def _new_customers(examples: HoldoutCustomers, max_history: int) -> Slice:
    customers = np.flatnonzero(examples.history_lengths <= max_history)
    return Slice("new_customers", customers, [examples.target_idxs[i] for i in customers])
