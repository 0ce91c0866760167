"""The randomised-slot examination estimate: hand-computed on a tiny log, and recovering a known curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fashionrec.evaluation.position_bias import (MIN_EXAMINATION, PRODUCT_PAGE_TOUCHPOINT, SlotEstimate, best_fit,
                                                 curve_fits, event_examination, examination_at, examination_curve,
                                                 explored_products, fitted_curve)

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
    fitted = fitted_curve(curve)
    assert list(fitted) == list(range(1, 11)) and all(a >= b for a, b in zip(fitted.values(), list(fitted.values())[1:]))
    for slot, true in zip(fitted, truth, strict=True):
        assert fitted[slot] == pytest.approx(true, rel=0.10), slot


def test_every_shuffled_slot_is_an_explored_slot() -> None:
    shown = impressions([("r1", "a", "XBC", None), ("r2", "b", "XBC", 1)]).assign(shuffled_slots=[2, None])
    explored = explored_products(shown)
    assert sorted(zip(explored["request_id"], explored["slot"], explored["product_id"])) == [
        ("r1", 1, "X"), ("r1", 2, "B"), ("r2", 1, "X")]  # r1's first two slots shuffled, C beyond them


def test_a_known_curve_is_recovered_from_shuffled_carousels() -> None:
    """RandTop-n: each of the 10 slots of every explored carousel measures the curve, so 10,000 carousels do
    what 100,000 randomised single slots do above (products differ in attractiveness, slots do not)."""
    rng = np.random.default_rng(5)
    truth = 0.85 ** np.arange(10)
    attractiveness = {f"P{j}": a for j, a in enumerate(np.linspace(0.1, 0.5, 10))}
    rows, clicked = [], []
    for i in range(10_000):
        order = [f"P{j}" for j in rng.permutation(10)]
        rows.append((f"r{i}", f"c{i}", order, None))
        clicked += [(f"c{i}", p, f"r{i}") for slot, p in enumerate(order)
                    if rng.random() < attractiveness[p] * truth[slot]]
    shown = impressions(rows).assign(shuffled_slots=10)
    fitted = fitted_curve(examination_curve(clicks(clicked), shown, window_s=60.0))
    for slot, true in zip(fitted, truth, strict=True):
        assert fitted[slot] == pytest.approx(true, rel=0.10), slot


def test_no_exploration_no_curve() -> None:
    assert examination_curve(CLICKS, SHOWN[SHOWN["explored_slot"].isna()], window_s=60.0) == []


def test_the_monotone_fit_pools_slots_that_rise_by_hand() -> None:
    """Rates 1/4, 2/4, 0/2: slots 1 and 2 violate "non-increasing", so they pool to 3/8 each; slot 3 stays 0.
    Two distinct levels are two parameters; the binomial log-likelihood is 3 log(3/8) + 5 log(5/8)."""
    estimates = [SlotEstimate(1, 4, 1, 1.0, 1.0, 1.0), SlotEstimate(2, 4, 2, 2.0, 0.5, 8.0),
                 SlotEstimate(3, 2, 0, 0.0, 0.0, math.nan)]
    monotone = curve_fits(estimates)["monotone"]
    assert monotone.curve == {1: 1.0, 2: 1.0, 3: 0.0} and monotone.parameters == 2
    assert monotone.log_likelihood == pytest.approx(3 * math.log(3 / 8) + 5 * math.log(5 / 8))
    assert monotone.bic == pytest.approx(2 * math.log(10) - 2 * monotone.log_likelihood)  # 10 explored slots
    assert fitted_curve([SlotEstimate(1, 4, 0, math.nan, math.nan, math.nan)]) == {}


def slots(counts) -> list[SlotEstimate]:
    """Estimates from (explored, clicks) per slot 1, 2, ...; only the counts matter to a fit."""
    return [SlotEstimate(slot, n, c, math.nan, math.nan, math.nan) for slot, (n, c) in enumerate(counts, start=1)]


def test_two_slots_fit_exactly_in_either_two_parameter_family() -> None:
    """20 of 100 clicked at slot 1, 10 of 100 at slot 2: both families pass through both rates."""
    for family in ("geometric", "power"):
        assert curve_fits(slots([(100, 20), (100, 10)]))[family].curve == pytest.approx({1: 1.0, 2: 0.5}, rel=1e-4)


def test_the_family_that_fits_the_clicks_is_chosen() -> None:
    """Exact counts from a geometric decay (0.8 a slot) pick the geometric family; a cliff after slot 3 picks the
    free monotone fit, whose two levels cost what a two-parameter family does (the lowest BIC each time)."""
    decay = [(100_000, round(20_000 * 0.8 ** s)) for s in range(10)]
    chosen = best_fit(slots(decay))
    assert chosen.family == "geometric"
    assert list(chosen.curve.values()) == pytest.approx([0.8 ** s for s in range(10)], rel=1e-3)
    cliff = best_fit(slots([(100_000, 20_000)] * 3 + [(100_000, 2_000)] * 7))
    assert cliff.family == "monotone" and cliff.curve[4] == pytest.approx(0.1)


def page(request: str, customer: str, products: str, at: float, touchpoint: str = PRODUCT_PAGE_TOUCHPOINT,
         shuffled: int | None = None) -> dict:
    return {"request_id": request, "customer_id": customer, "timestamp": pd.Timestamp(T0 + at, unit="s", tz="UTC"),
            "touchpoint": touchpoint, "product_ids": list(products), "explored_slot": None, "shuffled_slots": shuffled}


def click(customer: str, product: str, request: str, at: float) -> dict:
    return {"customer_id": customer, "product_id": product, "event_type": "click", "request_id": request,
            "timestamp": pd.Timestamp(T0 + at, unit="s", tz="UTC")}


def test_a_slot_whose_product_was_clicked_in_a_page_opened_from_an_earlier_slot_is_left_out() -> None:
    """Shopper a sees A B C shuffled, clicks A; A's page (opened 1 ms later) shows D, clicked; D's page shows C,
    clicked. C's slot 3 could not be clicked again: left out. Shopper b clicks C at slot 3 first and then A in
    C's page: b's slot 1 (A, unclicked) stays, since slot 1 came before the click that opened that page.
    Shopper c clicks nothing in the shuffled carousel h3: perhaps never looked at it, so it is not counted."""
    shown = pd.DataFrame([
        page("h1", "a", "ABC", 0.0, "for_you", shuffled=3), page("pA", "a", "DE", 1.001), page("pD", "a", "CF", 2.001),
        page("h2", "b", "ABC", 0.0, "for_you", shuffled=3), page("pC", "b", "AG", 1.001),
        page("h3", "c", "ABC", 0.0, "for_you", shuffled=3)])
    events = pd.DataFrame([click("a", "A", "h1", 1.0), click("a", "D", "pA", 2.0), click("a", "C", "pD", 3.0),
                           click("b", "C", "h2", 1.0), click("b", "A", "pC", 2.0)])
    curve = examination_curve(events, shown, window_s=60.0)
    assert [(e.slot, e.explored, e.clicks) for e in curve] == [(1, 2, 1), (2, 2, 0), (3, 1, 1)]


def test_the_curve_between_before_and_beyond_its_slots() -> None:
    np.testing.assert_allclose(examination_at({1: 1.0, 3: 0.5}, np.array([1, 2, 3, 7])), [1.0, 0.75, 0.5, 0.5])
    np.testing.assert_allclose(examination_at({2: 1.0, 4: 0.5}, np.array([1, 3])), [1.0, 0.75])


def test_each_event_gets_the_examination_of_where_its_product_was_shown() -> None:
    shown = impressions([("r1", "a", "XBC", None), ("r2", "b", "CXB", None)]).assign(
        positions=[[1, 2, 3], [1, 2, 3]])
    events = pd.concat([clicks([("a", "B", "r1"), ("b", "B", None), ("a", "Z", None)]),
                        clicks([("b", "C", "r2")]).assign(event_type="purchase")], ignore_index=True)
    curve = {1: 1.0, 2: 0.6, 3: 0.0}
    examination = event_examination(events, shown, curve, window_s=60.0)
    # B at slot 2 of r1; B at slot 3 of r2 (found by the window), floored; Z never shown; C at slot 1 of r2
    np.testing.assert_allclose(examination.to_numpy(), [0.6, MIN_EXAMINATION, np.nan, 1.0])
    assert event_examination(events, shown, {}, window_s=60.0).isna().all()
