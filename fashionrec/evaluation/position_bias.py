"""The examination curve, estimated from the shop's exploration traffic (randomised slots).

In an explored carousel (:mod:`fashionrec.online.exploration`) the product in an explored slot is drawn
independently of the slot: the inserted product of an ``insert`` carousel, and the product in every one
of the shuffled slots of a ``shuffle`` carousel (RandTop-n). Its click-through rate at slot s is therefore
``examination(s) * E[attractiveness]`` with the same expectation at every slot. The ratio of click rates,
slot s over slot 1, therefore estimates ``examination(s) / examination(1)``: the position bias a debiased training run divides by. Its
interval comes from the delta method for a ratio of two independent proportions.

A per-slot ratio leans on the first slot's few clicks, so :func:`fitted_curve` pools the slots: the
explored click rates fitted non-increasing in the slot (pool-adjacent-violators, weighted by explored
impressions), relative to the fitted first slot. :func:`event_examination` then gives each logged event
the examination of the position its product was shown at: the ``examination`` column that
position-debiased training divides by.

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
from scipy import optimize, stats

from fashionrec.evaluation.experiment_report import attribute_events

CLICK = "click"
# A click at a slot whose fitted examination is 0 still happened: its examination is floored here, so it
# stays a probability in (0, 1] (training clips the inverse at train.max_inverse_examination anyway).
MIN_EXAMINATION = 0.01


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
    """One row per explored slot of an impression: request_id, customer_id, timestamp, slot and the product
    there. An ``insert`` impression gives its inserted slot, a ``shuffle`` one each of its shuffled slots
    (a log without the ``shuffled_slots`` column has only the former)."""
    inserted = impressions[impressions["explored_slot"].notna()]
    shuffled_slots = impressions.get("shuffled_slots", pd.Series(np.nan, index=impressions.index))
    shuffled = impressions[shuffled_slots.notna()]
    explored = pd.concat([inserted.assign(slot=inserted["explored_slot"].astype(int)),
                          shuffled.assign(slot=[list(range(1, int(n) + 1)) for n in shuffled_slots.dropna()])
                          .explode("slot")])
    slots = explored["slot"].astype(int).to_numpy()
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


def fitted_curve(estimates: list[SlotEstimate]) -> dict[int, float]:
    """Examination by slot, relative to the first explored slot: the explored products' click rates fitted
    non-increasing in the slot (weighted by explored impressions), each divided by the first slot's fitted
    rate. Empty when no explored product was clicked."""
    if not estimates or not sum(e.clicks for e in estimates):
        return {}
    rates = np.array([e.clicks / e.explored for e in estimates])
    fitted = optimize.isotonic_regression(rates, weights=[e.explored for e in estimates], increasing=False).x
    return {e.slot: float(rate / fitted[0]) for e, rate in zip(estimates, fitted, strict=True)}


def examination_at(curve: dict[int, float], positions: np.ndarray) -> np.ndarray:
    """The curve at 1-based ``positions``: linear between estimated slots, 1 before the first one, and the
    last slot's value beyond the last (a flat tail under-weights far slots rather than guessing their decay)."""
    slots = np.array(sorted(curve), float)
    values = np.array([curve[int(slot)] for slot in slots])
    return np.interp(np.asarray(positions, float), slots, values, left=1.0, right=values[-1])


def event_examination(events: pd.DataFrame, impressions: pd.DataFrame, curve: dict[int, float],
                      window_s: float) -> pd.Series:
    """For each event (``events``' index): the examination of the position its product was shown at in the
    impression it is attributed to; NaN when it is attributed to none (or the curve is empty)."""
    examination = pd.Series(np.nan, index=events.index, dtype="float64")
    attributed = attribute_events(events, impressions, window_s).dropna()
    if not curve or attributed.empty:
        return examination
    shown = impressions[["request_id", "product_ids", "positions"]].explode(["product_ids", "positions"])
    shown = shown.dropna(subset=["product_ids"]).drop_duplicates(["request_id", "product_ids"])
    position = shown.set_index(["request_id", "product_ids"])["positions"]
    keys = pd.MultiIndex.from_arrays([attributed.to_numpy(), events.loc[attributed.index, "product_id"].to_numpy()])
    found = position.reindex(keys).to_numpy(dtype=float)
    known = ~np.isnan(found)
    examination[attributed.index[known]] = np.maximum(examination_at(curve, found[known]), MIN_EXAMINATION)
    return examination
