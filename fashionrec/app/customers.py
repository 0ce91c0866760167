"""Customer histories as the serving request carries them: recent product ids and event weights.

In production the storefront sends the history it holds; the CLI and the demo read it from the
ingested event log instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fashionrec import artifacts
from fashionrec import storage


@dataclass(frozen=True)
class CustomerHistory:
    customer_id: str
    product_ids: list[str]  # oldest first
    weights: list[float]


def load_events(ingested_dir: str) -> pd.DataFrame:
    """Every accepted event (train and holdout), oldest first."""
    frames = [
        storage.read_table(storage.join(ingested_dir, name))
        for name in (artifacts.TRAIN_EVENTS_FILE, artifacts.HOLDOUT_EVENTS_FILE)
    ]
    return pd.concat(frames, ignore_index=True).sort_values("timestamp", kind="stable")


def recent_history(events: pd.DataFrame, customer_id: str, limit: int) -> CustomerHistory:
    """The customer's ``limit`` most recent events; raises KeyError for an unknown customer."""
    mine = events[events["customer_id"] == customer_id].tail(limit)
    if mine.empty:
        raise KeyError(f"customer {customer_id!r} has no events")
    return CustomerHistory(customer_id, mine["product_id"].tolist(), mine["weight"].astype(float).tolist())


def sample_customers(events: pd.DataFrame, count: int, seed: int = 0) -> list[str]:
    """A few active customers (at least five events) to show recommendations for."""
    active = events["customer_id"].value_counts()
    active = active[active >= 5].index.to_series()
    return sorted(active.sample(min(count, len(active)), random_state=seed).tolist())
