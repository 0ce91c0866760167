"""The examination curve, estimated from the shop's exploration traffic (a randomised-slot estimate).

In an explored carousel (:mod:`fashionrec.online.exploration`) the explored product is drawn independently
of the slot it lands in, so its click-through rate at slot s is ``examination(s) * E[attractiveness]``
with the same expectation at every slot. The ratio of click rates, slot s over slot 1, therefore
estimates ``examination(s) / examination(1)``: the position bias a debiased training run divides by. Its
interval comes from the delta method for a ratio of two independent proportions.

Input is the shop's log as :func:`fashionrec.evaluation.experiment_report.read_experiment_log` reads it.
A click counts for an explored product when it is attributed to that impression
(:func:`fashionrec.evaluation.experiment_report.attribute_events`: its request id, else the latest showing
impression within the window).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from fashionrec.evaluation.experiment_report import attribute_events

CLICK = "click"


@dataclass(frozen=True)
class SlotEstimate:
    """One slot: explored impressions, clicks on the explored product, and examination relative to slot 1."""

    slot: int
    explored: int
    clicks: int
    examination: float  # relative to the first slot (1 there); NaN without clicks at slot 1
    low: float
    high: float


def explored_products(impressions: pd.DataFrame) -> pd.DataFrame:
    """One row per explored impression: request_id, customer_id, timestamp, slot and the explored product."""
    explored = impressions[impressions["explored_slot"].notna()]
    slots = explored["explored_slot"].astype(int).to_numpy()
    products = [list(ids)[slot - 1] for ids, slot in zip(explored["product_ids"], slots, strict=True)]
    return pd.DataFrame({"request_id": explored["request_id"].to_numpy(), "customer_id": explored["customer_id"].to_numpy(),
                         "timestamp": explored["timestamp"].to_numpy(), "slot": slots, "product_id": products})


def examination_curve(events: pd.DataFrame, impressions: pd.DataFrame, window_s: float,
                      confidence: float = 0.95) -> list[SlotEstimate]:
    """The examination curve by explored slot (ascending), relative to the first explored slot, with intervals."""
    explored = explored_products(impressions)
    if explored.empty:
        return []
    clicks = events[events["event_type"] == CLICK]
    attributed = attribute_events(clicks, impressions, window_s)
    clicked = set(zip(attributed.dropna(), clicks.loc[attributed.dropna().index, "product_id"]))
    explored["clicked"] = [(r, p) in clicked for r, p in zip(explored["request_id"], explored["product_id"])]
    by_slot = explored.groupby("slot")["clicked"].agg(["size", "sum"])
    first = by_slot.iloc[0]
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return [_estimate(int(slot), int(row["size"]), int(row["sum"]), int(first["size"]), int(first["sum"]), z,
                      reference=slot == by_slot.index[0])
            for slot, row in by_slot.iterrows()]


def _estimate(slot: int, n: int, clicks: int, n_first: int, clicks_first: int, z: float,
              reference: bool) -> SlotEstimate:
    """Ratio of click rates with a delta-method interval on the log scale (ratios are skewed):
    Var(log(p/q)) ≈ (1 - p) / (n p) + (1 - q) / (m q). The reference slot is 1 exactly."""
    if clicks_first == 0:
        return SlotEstimate(slot, n, clicks, math.nan, math.nan, math.nan)
    if reference:
        return SlotEstimate(slot, n, clicks, 1.0, 1.0, 1.0)
    if clicks == 0:
        return SlotEstimate(slot, n, clicks, 0.0, 0.0, math.nan)
    p, q = clicks / n, clicks_first / n_first
    spread = z * math.sqrt((1 - p) / (n * p) + (1 - q) / (n_first * q))
    ratio = p / q
    return SlotEstimate(slot, n, clicks, ratio, float(ratio * np.exp(-spread)), float(ratio * np.exp(spread)))
