"""The randomised-slot examination estimate: hand-computed on a tiny log, and recovering a known curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fashionrec.evaluation.position_bias import examination_curve, explored_products

T0 = 1_796_000_000.0
Z95 = 1.959963984540054


def impressions(rows) -> pd.DataFrame:
    """rows: (request_id, customer, products, explored_slot or None)."""
    return pd.DataFrame([{"request_id": r, "customer_id": c, "timestamp": pd.Timestamp(T0, unit="s", tz="UTC"),
                          "product_ids": list(products), "explored_slot": slot} for r, c, products, slot in rows])


def clicks(rows) -> pd.DataFrame:
    """rows: (customer, product, request_id or None)."""
    return pd.DataFrame([{"customer_id": c, "product_id": p, "event_type": "click", "request_id": r,
                          "timestamp": pd.Timestamp(T0 + 5, unit="s", tz="UTC")} for c, p, r in rows])


# slot 1 explored 4 times (X clicked twice), slot 3 explored 4 times (once); r9 was not explored
SHOWN = impressions([("r1", "a", "XBC", 1), ("r2", "b", "XBC", 1), ("r3", "c", "XBC", 1), ("r4", "d", "XBC", 1),
                     ("r5", "e", "BCX", 3), ("r6", "f", "BCX", 3), ("r7", "g", "BCX", 3), ("r8", "h", "BCX", 3),
                     ("r9", "i", "XBC", None)])
CLICKS = clicks([("a", "X", "r1"), ("b", "X", None),  # by request id, and by the window
                 ("c", "B", "r3"),  # not the explored product: no evidence on the slot
                 ("e", "X", "r5"), ("i", "X", "r9")])  # r9 was not explored


def test_the_explored_products_are_read_from_their_slots() -> None:
    explored = explored_products(SHOWN)
    assert explored["product_id"].tolist() == ["X"] * 8 and explored["slot"].tolist() == [1] * 4 + [3] * 4


def test_the_curve_by_hand() -> None:
    first, third = examination_curve(CLICKS, SHOWN, window_s=60.0)
    assert (first.slot, first.explored, first.clicks, first.examination) == (1, 4, 2, 1.0)
    assert (third.slot, third.explored, third.clicks) == (3, 4, 1)
    assert third.examination == pytest.approx(0.25 / 0.5)
    spread = Z95 * math.sqrt((1 - 0.25) / (4 * 0.25) + (1 - 0.5) / (4 * 0.5))  # sqrt(0.75 + 0.25) = 1
    assert (third.low, third.high) == pytest.approx((0.5 * math.exp(-spread), 0.5 * math.exp(spread)))


def test_a_known_curve_is_recovered_from_randomised_slots() -> None:
    rng = np.random.default_rng(3)
    slots = rng.integers(1, 11, size=100_000)
    truth = 0.85 ** (np.arange(1, 11) - 1)
    clicked = rng.random(len(slots)) < 0.3 * truth[slots - 1]  # attractiveness 0.3 everywhere
    shown = impressions([(f"r{i}", f"c{i}", ["P"] * 10, int(s)) for i, s in enumerate(slots)])
    events = clicks([(f"c{i}", "P", f"r{i}") for i in np.flatnonzero(clicked)])
    curve = examination_curve(events, shown, window_s=60.0)
    assert [e.slot for e in curve] == list(range(1, 11))
    for estimate, true in zip(curve, truth, strict=True):  # about 2.8 % relative error per slot at this size
        assert estimate.examination == pytest.approx(true, rel=0.10), estimate
    # the intervals share slot 1's noise, so they miss together or not at all; most must hold the truth
    assert sum(e.low <= true <= e.high for e, true in zip(curve[1:], truth[1:], strict=True)) >= 7


def test_no_exploration_no_curve() -> None:
    assert examination_curve(CLICKS, SHOWN[SHOWN["explored_slot"].isna()], window_s=60.0) == []
