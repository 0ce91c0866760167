"""The examination curve, estimated from the shop's exploration traffic (randomised slots).

In an explored carousel (:mod:`fashionrec.online.exploration`) the product in an explored slot is drawn
independently of the slot: the inserted product of an ``insert`` carousel, and the product in every one
of the shuffled slots of a ``shuffle`` carousel (RandTop-n). Its click-through rate at slot s is therefore
``examination(s) * E[attractiveness]`` with the same expectation at every slot. The ratio of click rates,
slot s over slot 1, therefore estimates ``examination(s) / examination(1)``: the position bias a debiased
training run divides by. Its interval comes from the delta method for a ratio of two independent
proportions.

Two things stand between those click rates and the curve:

* **Noise.** A per-slot ratio leans on the first slot's few clicks, so :func:`fitted_curve` pools the
  slots. It fits the explored click rates by binomial likelihood in three non-increasing families (a
  geometric decay, a power law in the slot, and any non-increasing curve by pool-adjacent-violators) and
  keeps the one with the lowest BIC: the shape is chosen by the data, and a two-parameter family that
  fits spends far less of the few clicks than one rate per slot.
* **Clicks already made.** A shopper follows a click at once (the product page, its similar items) and
  comes back for the rest of the carousel, and a product clicked on the way is not clicked again. So a
  later slot's product is sometimes already clicked, in a page opened from an earlier slot, by the time
  the shopper's eye gets there: its click was possible but cannot show. :func:`examination_curve` leaves
  such a slot out of the count (it is censored, not a "no"); a product page is linked to the click that
  opened it (the shopper's latest click before it).

:func:`event_examination` then gives each logged event the examination of the position its product was
shown at: the ``examination`` column that position-debiased training divides by.

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

from fashionrec.evaluation.experiment_report import attribute_events, epoch_micros

CLICK = "click"
# The shop's product page logs its similar-items carousel under this touchpoint: a page a click opened.
PRODUCT_PAGE_TOUCHPOINT = "similar"
# A click at a slot whose fitted examination is 0 still happened: its examination is floored here, so it
# stays a probability in (0, 1] (training clips the inverse at train.max_inverse_examination anyway).
MIN_EXAMINATION = 0.01
MAX_RATE = 1.0 - 1e-9  # a fitted click rate stays below 1, so a missed click keeps a finite likelihood


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
    """One row per explored slot of an impression: request_id, customer_id, timestamp, slot, the product
    there and whether the slot was one of a shuffle. An ``insert`` impression gives its inserted slot, a
    ``shuffle`` one each of its shuffled slots (a log without the ``shuffled_slots`` column has only the
    former)."""
    inserted = impressions[impressions["explored_slot"].notna()]
    shuffled_slots = impressions.get("shuffled_slots", pd.Series(np.nan, index=impressions.index))
    shuffled = impressions[shuffled_slots.notna()]
    explored = pd.concat([inserted.assign(slot=inserted["explored_slot"].astype(int)),
                          shuffled.assign(slot=[list(range(1, int(n) + 1)) for n in shuffled_slots.dropna()])
                          .explode("slot")])
    slots = explored["slot"].astype(int).to_numpy()
    products = [list(ids)[slot - 1] for ids, slot in zip(explored["product_ids"], slots, strict=True)]
    return pd.DataFrame({"request_id": explored["request_id"].to_numpy(),
                         "customer_id": explored["customer_id"].to_numpy(),
                         "timestamp": explored["timestamp"].to_numpy(), "slot": slots, "product_id": products,
                         "shuffled": np.arange(len(explored)) >= len(inserted)})


def examination_curve(events: pd.DataFrame, impressions: pd.DataFrame, window_s: float,
                      confidence: float = 0.95) -> list[SlotEstimate]:
    """The examination curve by explored slot (ascending), relative to the first explored slot, with intervals.

    An explored slot whose product the shopper had already clicked in a page opened from an earlier slot of
    the same carousel is left out (censored: it could not be clicked again). Shuffled carousels count only
    when something in them was clicked. One without a click may never have been looked at (the shopper
    left first). It adds nothing to any slot's clicks, so leaving it out keeps the ratios of click counts
    exactly. What it prevents: the censored slots all lie in looked-at carousels, more of them the further
    along the slot, so leaving them out of every carousel would tilt the far slots towards carousels nobody
    looked at. (Not for ``insert``: there the one explored slot's own click would decide whether it counts.)
    """
    explored = explored_products(impressions)
    if explored.empty:
        return []
    shown = _shown_slots(impressions)
    clicks = _attributed_clicks(events, impressions, shown, window_s)
    clicked = set(zip(clicks["request_id"], clicks["product_id"]))
    explored["clicked"] = [(r, p) in clicked for r, p in zip(explored["request_id"], explored["product_id"])]
    explored["carousel"] = explored.merge(shown, on=["request_id", "product_id"], how="left")["carousel"].to_numpy()
    looked_at = set(zip(clicks["request_id"], clicks["carousel"]))
    explored = explored[~explored["shuffled"].to_numpy() | np.array(
        [(r, c) in looked_at for r, c in zip(explored["request_id"], explored["carousel"])], bool)]
    explored = explored[~_censored(explored, clicks, impressions)]
    if explored.empty:
        return []
    by_slot = explored.groupby("slot")["clicked"].agg(["size", "sum"])
    first = by_slot.iloc[0]
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return [_estimate(int(slot), int(row["size"]), int(row["sum"]), int(first["size"]), int(first["sum"]), z,
                      reference=slot == by_slot.index[0])
            for slot, row in by_slot.iterrows()]


def _attributed_clicks(events: pd.DataFrame, impressions: pd.DataFrame, shown: pd.DataFrame,
                       window_s: float) -> pd.DataFrame:
    """The clicks attributed to an impression: customer_id, product_id, request_id (the impression's),
    timestamp (microseconds), and the carousel and slot where ``shown`` (:func:`_shown_slots`) has the product."""
    clicks = events[events["event_type"] == CLICK]
    attributed = attribute_events(clicks, impressions, window_s).dropna()
    clicks = pd.DataFrame({"customer_id": clicks.loc[attributed.index, "customer_id"].to_numpy(),
                           "product_id": clicks.loc[attributed.index, "product_id"].to_numpy(),
                           "request_id": attributed.to_numpy(),
                           "timestamp": epoch_micros(clicks.loc[attributed.index, "timestamp"]).to_numpy()})
    return clicks.merge(shown, on=["request_id", "product_id"], how="left").drop_duplicates(
        ["request_id", "product_id"])


def _shown_slots(impressions: pd.DataFrame) -> pd.DataFrame:
    """request_id, product_id, the carousel (touchpoint) and the 1-based slot it was shown at (a request's
    carousels never repeat a product)."""
    carousel = impressions["touchpoint"] if "touchpoint" in impressions else ""
    shown = impressions[["request_id", "product_ids"]].assign(
        carousel=carousel, slot=[list(range(1, len(ids) + 1)) for ids in impressions["product_ids"]]
    ).explode(["product_ids", "slot"])
    shown = shown.rename(columns={"product_ids": "product_id"}).dropna(subset=["product_id"])
    return shown.drop_duplicates(["request_id", "product_id"])


def _censored(explored: pd.DataFrame, clicks: pd.DataFrame, impressions: pd.DataFrame) -> np.ndarray:
    """For each explored row not clicked: was its product clicked in a page opened (directly or further
    down) from a click on an earlier slot of the same carousel?"""
    opened_by = _opening_clicks(clicks, impressions)
    in_carousel = {key: list(zip(group["slot"], group["product_id"], strict=True))
                   for key, group in clicks.dropna(subset=["slot"]).groupby(["request_id", "carousel"])}
    below: dict[tuple[str, str], set[str]] = {}  # (request, clicked product) -> products clicked further down
    for click in _deepest_first(opened_by):
        below[click] = set()
        for page in opened_by[click]:
            for _, product in in_carousel.get((page, PRODUCT_PAGE_TOUCHPOINT), []):
                below[click] |= {product} | below.get((page, product), set())
    censored = np.zeros(len(explored), bool)
    rows = zip(explored["request_id"], explored["carousel"], explored["slot"], explored["product_id"],
               explored["clicked"], strict=True)
    for i, (request, carousel, slot, product, clicked) in enumerate(rows):
        earlier = [p for s, p in in_carousel.get((request, carousel), []) if s < slot]
        censored[i] = not clicked and any(product in below.get((request, p), ()) for p in earlier)
    return censored


def _opening_clicks(clicks: pd.DataFrame, impressions: pd.DataFrame) -> dict[tuple[str, str], list[str]]:
    """(request_id, product) of a click -> the product pages it opened: each product page is opened by the
    shopper's latest click at or before it."""
    pages = (impressions[impressions["touchpoint"] == PRODUCT_PAGE_TOUCHPOINT] if "touchpoint" in impressions
             else impressions.iloc[:0])
    pages = pd.DataFrame({"customer_id": pages["customer_id"].astype(str), "page": pages["request_id"],
                          "timestamp": epoch_micros(pages["timestamp"])}).sort_values("timestamp")
    ordered = clicks.astype({"customer_id": str}).sort_values("timestamp")
    linked = pd.merge_asof(pages, ordered, on="timestamp", by="customer_id", direction="backward").dropna(
        subset=["request_id"])
    opened: dict[tuple[str, str], list[str]] = {}
    for request, product, page in zip(linked["request_id"], linked["product_id"], linked["page"], strict=True):
        if page != request:
            opened.setdefault((request, product), []).append(page)
    return opened


def _deepest_first(opened_by: dict[tuple[str, str], list[str]]) -> list[tuple[str, str]]:
    """The opening clicks ordered so that every click comes after the clicks made in the pages it opened
    (a post-order walk; a malformed log that loops is cut where it loops)."""
    clicks_on_page: dict[str, list[tuple[str, str]]] = {}
    for request, product in opened_by:
        clicks_on_page.setdefault(request, []).append((request, product))
    order: list[tuple[str, str]] = []
    visited: set[tuple[str, str]] = set()
    for root in opened_by:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node in visited:
                continue
            visited.add(node)
            stack.append((node, True))
            stack.extend((child, False) for page in opened_by.get(node, []) for child in clicks_on_page.get(page, []))
    return order


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


@dataclass(frozen=True)
class CurveFit:
    """The explored click rate per slot as one family fits it (binomial likelihood), and its BIC."""

    family: str
    slots: tuple[int, ...]
    rates: tuple[float, ...]  # fitted click rate per slot, non-increasing
    parameters: int  # free parameters, the overall rate included (PAVA: its number of distinct levels)
    log_likelihood: float
    observations: int  # explored slots counted

    @property
    def bic(self) -> float:
        """Schwarz's criterion: consistent, so with enough traffic it picks the true family when one of them
        is, where AIC keeps a fixed chance of the free fit's extra levels (it targets prediction)."""
        return self.parameters * math.log(self.observations) - 2.0 * self.log_likelihood

    @property
    def curve(self) -> dict[int, float]:
        """Examination by slot relative to the first slot."""
        return {slot: rate / self.rates[0] for slot, rate in zip(self.slots, self.rates, strict=True)}


def curve_fits(estimates: list[SlotEstimate]) -> dict[str, CurveFit]:
    """Each family's fit of the explored click rates: ``geometric`` (rate r * d ** (slot - first)), ``power``
    (r * (slot / first) ** -a) and ``monotone`` (any non-increasing rates: pool-adjacent-violators, the
    binomial maximum likelihood under that constraint). Empty when no explored product was clicked."""
    if not estimates or not sum(e.clicks for e in estimates):
        return {}
    slots = np.array([e.slot for e in estimates], float)
    shown = np.array([e.explored for e in estimates], float)
    clicks = np.array([e.clicks for e in estimates], float)
    monotone = optimize.isotonic_regression(clicks / shown, weights=shown, increasing=False).x
    fits = {"monotone": _fit("monotone", slots, monotone, len(np.unique(monotone)), shown, clicks)}
    for family, shape in (("geometric", slots - slots[0]), ("power", np.log(slots / slots[0]))):
        rates = _log_linear_rates(shape, shown, clicks)
        fits[family] = _fit(family, slots, rates, 2, shown, clicks)
    return fits


def best_fit(estimates: list[SlotEstimate]) -> CurveFit | None:
    """The family with the lowest BIC (None when no explored product was clicked)."""
    fits = curve_fits(estimates)
    return min(fits.values(), key=lambda fit: fit.bic) if fits else None


def fitted_curve(estimates: list[SlotEstimate]) -> dict[int, float]:
    """Examination by slot, relative to the first explored slot, from the best fit of the explored click rates
    (:func:`best_fit`). Empty when no explored product was clicked."""
    fit = best_fit(estimates)
    return fit.curve if fit else {}


def _log_linear_rates(shape: np.ndarray, shown: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Rates exp(a - b * shape), b >= 0, at their binomial maximum likelihood."""
    start = np.log(clicks.sum() / shown.sum())
    bounds = [(None, np.log(MAX_RATE)), (0.0, None)]
    found = optimize.minimize(lambda ab: -_log_likelihood(np.exp(ab[0] - ab[1] * shape), shown, clicks),
                              np.array([start, 0.0]), bounds=bounds, method="L-BFGS-B")
    return np.exp(found.x[0] - found.x[1] * shape)


def _fit(family: str, slots: np.ndarray, rates: np.ndarray, parameters: int, shown: np.ndarray,
         clicks: np.ndarray) -> CurveFit:
    return CurveFit(family, tuple(int(s) for s in slots), tuple(float(r) for r in rates), parameters,
                    _log_likelihood(rates, shown, clicks), int(shown.sum()))


def _log_likelihood(rates: np.ndarray, shown: np.ndarray, clicks: np.ndarray) -> float:
    """Binomial log-likelihood of ``clicks`` of ``shown`` at ``rates`` (0 log 0 = 0)."""
    rates = np.clip(rates, 0.0, MAX_RATE)
    with np.errstate(divide="ignore", invalid="ignore"):
        hits = np.where(clicks > 0, clicks * np.log(rates), 0.0)
        misses = np.where(shown > clicks, (shown - clicks) * np.log1p(-rates), 0.0)
    return float(np.sum(hits + misses))


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
