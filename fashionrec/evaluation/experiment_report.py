"""The online experiment report: did an arm change what visitors do, or is the difference noise?

Input is the shop's own log (``<log_dir>/events/`` and ``<log_dir>/impressions/``, see
``fashionrec.online.event_log``), where the shop tags every impression, and the events it knows the
origin of, with the ``experiment`` and ``arm`` it served. Older parts lack those columns (and the
events' ``request_id``); they read as null, so such rows belong to no experiment.

Contract of :func:`experiment_report`:

- Only rows tagged ``experiment == experiment.name`` count. A visitor (a ``customer_id``, which may be
  ``session:<id>``) is in the experiment from their first tagged impression on; their arm is the arm
  on their impressions. A visitor whose impressions name two arms is a data error: counted, named
  (a few examples), and left out. Impressions naming no arm of the experiment are counted and left out.
  The events' own ``arm`` column is not used: the impressions decide.
- Attribution of an event to an impression: the impression its ``request_id`` names, when that
  impression showed the event's product to the same visitor; otherwise the latest impression of the
  visitor that showed the product at or before the event and at most ``attribution_window_s`` before
  it; otherwise none (the event still counts for visitor-level metrics: conversion, revenue, orders).
- The unit of analysis is the visitor, the unit of randomisation: every metric is a ratio of per-visitor
  sums (:data:`METRICS`), and its variance comes from the delta method over visitors (Deng, Knoblich &
  Lu 2018, "Applying the delta method in metric analytics"), so visitors with many impressions do not
  pass for independent observations. Arms are independent samples.
- The log has no order ids, so an order is one visitor's purchases on one UTC calendar day.
- A purchase of a product missing from ``prices`` adds no revenue (counted as a data error).
- CTR is also reported per touchpoint (the impression records' ``touchpoint``: a homepage carousel, a
  category or search list, a product page's similar items): the clicks attributed to that touchpoint's
  impressions over its impressions, per visitor as above. A change of model shows most where the model
  alone orders what is shown (*for you*), and is diluted in the overall CTR by carousels it barely moves.
- Verdicts follow the publishing gate's rule (:func:`fashionrec.evaluation.gate._compare` with no
  allowed change): "better" when the interval of (arm − control) lies above 0, "worse" below 0, else
  "equal within noise"; "insufficient data" when the interval is undefined (an arm with fewer than
  :data:`MIN_VISITORS` visitors, or a zero denominator). The overall verdict is the primary metric's,
  unless the visitor split fails the sample-ratio check, which makes every comparison suspect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from scipy import stats

from fashionrec import storage
from fashionrec.artifacts import CATALOGUE_FILE
from fashionrec.config import EVENT_TYPES, ExperimentConfig
from fashionrec.evaluation.bootstrap import Interval
from fashionrec.evaluation.report import png_base64
from fashionrec.repository.experiments import Arm, Experiment

# The log's columns (fashionrec.online.event_log.SCHEMAS, which this layer may not import), with the
# experiment columns later parts carry; missing ones read as all-null.
EVENT_COLUMNS = ("customer_id", "product_id", "event_type", "timestamp", "weight", "request_id", "experiment", "arm",
                 "device", "channel", "region", "local_time")
IMPRESSION_COLUMNS = ("request_id", "timestamp", "customer_id", "touchpoint", "model_version", "product_ids",
                      "positions", "scores", "fallback", "experiment", "arm", "propensities", "explored_slot",
                      "shuffled_slots", "device", "region", "local_time")
EVENTS, IMPRESSIONS = "events", "impressions"  # the log's folders under log_dir
JSON_FILE, HTML_FILE = "report.json", "report.html"  # what write_experiment_report writes
CLICK, ADD_TO_BAG, PURCHASE = "click", "add_to_bag", "purchase"

# metric -> (numerator, denominator): per-visitor columns whose sums over an arm's visitors give the metric.
METRICS: dict[str, tuple[str, str]] = {
    "ctr": ("clicks", "impressions"),
    "add_to_bag_rate": ("add_to_bag", "impressions"),
    "conversion": ("converted", "visitors"),
    "revenue_per_visitor": ("revenue", "visitors"),
    "average_order_value": ("revenue", "orders"),
}
METRIC_LABELS = {"ctr": "CTR", "add_to_bag_rate": "Add-to-bag rate", "conversion": "Conversion",
                 "revenue_per_visitor": "Revenue per visitor", "average_order_value": "Average order value"}
RATE_METRICS = ("ctr", "add_to_bag_rate", "conversion")  # shown as percentages (differences in points)

MICROS = 1_000_000  # the log's timestamps are microseconds since the epoch, UTC
MICROS_PER_DAY = 86_400 * MICROS
MIN_VISITORS = 2  # per arm: a sample variance needs two
MAX_EXAMPLES = 20  # visitor ids named in the report for a data error
MAX_DATE_TICKS = 8  # labelled days on the daily plot's axis (whole days only)
BETTER, WORSE, EQUAL = "better", "worse", "equal within noise"
NO_DATA = "insufficient data"
INVALID = "invalid: sample ratio mismatch"
DAY_FORMAT = "%Y-%m-%d"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


# ----------------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class ArmResult:
    """One arm's counts and metric values (None where a metric's denominator is 0)."""

    name: str
    version: int
    share: float
    visitors: int
    impressions: int
    fallback_impressions: int  # served without a model: a health signal, not a metric
    events: dict[str, int]  # counted events (tagged, of a visitor, from their first impression on), by type
    attributed: dict[str, int]  # of those, the ones attributed to an impression
    orders: int
    revenue: float
    metrics: dict[str, float | None]


@dataclass(frozen=True)
class Comparison:
    """One metric of one arm against control: the difference and relative lift, with intervals."""

    arm: str
    metric: str
    control: float | None
    value: float | None
    difference: Interval  # arm − control
    lift: Interval  # arm / control − 1
    verdict: str


@dataclass(frozen=True)
class SampleRatio:
    """Chi-square goodness of fit of visitors per arm against the declared shares."""

    visitors: dict[str, int]
    expected: dict[str, float]
    statistic: float | None
    p_value: float | None
    detected: bool


@dataclass(frozen=True)
class DataErrors:
    """Rows the report had to leave out or could not value; non-zero counts deserve a look at the shop."""

    visitors_in_several_arms: int
    examples: tuple[str, ...]  # some of those visitors
    impressions_with_unknown_arm: int
    purchases_without_price: int


@dataclass(frozen=True)
class DailyPoint:
    """Cumulative figures of one arm at the end of one UTC day."""

    date: str
    arm: str
    new_visitors: int
    visitors: int
    conversion: float | None


@dataclass(frozen=True)
class ExperimentReport:
    """Everything the report shows; :meth:`to_dict` is its JSON (NaN as null)."""

    experiment: str
    definition: dict[str, Any]  # Experiment.to_dict()
    period: tuple[str | None, str | None]  # first and last counted impression (UTC)
    primary_metric: str
    confidence: float
    attribution_window_s: float
    arms: tuple[ArmResult, ...]
    comparisons: tuple[Comparison, ...]
    sample_ratio: SampleRatio
    data_errors: DataErrors
    daily: tuple[DailyPoint, ...]
    by_touchpoint: dict[str, tuple[Comparison, ...]]  # touchpoint -> each arm's CTR there against control
    verdicts: dict[str, str]  # non-control arm -> its primary verdict (INVALID on a sample ratio mismatch)
    verdict: str  # the only arm's verdict; with several arms "arm: verdict; ..."

    @property
    def srm_detected(self) -> bool:
        return self.sample_ratio.detected

    def arm(self, name: str) -> ArmResult:
        return next(arm for arm in self.arms if arm.name == name)

    def comparison(self, arm: str, metric: str) -> Comparison:
        return next(c for c in self.comparisons if c.arm == arm and c.metric == metric)

    def touchpoint_comparison(self, arm: str, touchpoint: str) -> Comparison:
        """``arm``'s CTR on ``touchpoint``'s impressions against control's."""
        return next(c for c in self.by_touchpoint[touchpoint] if c.arm == arm)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    """JSON-native values: lists for tuples, None for NaN/inf, Python numbers for numpy ones."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# ----------------------------------------------------------------------------------------------------
# Reading the log


def read_experiment_log(log_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, impressions) of the shop's log under ``log_dir`` (local or gs://), every part of each.

    Both frames have every column of :data:`EVENT_COLUMNS` / :data:`IMPRESSION_COLUMNS` (columns older
    parts lack are null) and are empty, with those columns, when a kind has no parts yet.
    """
    return (_read_kind(storage.join(log_dir, EVENTS), EVENT_COLUMNS),
            _read_kind(storage.join(log_dir, IMPRESSIONS), IMPRESSION_COLUMNS))


def _read_kind(uri: str, columns: Sequence[str]) -> pd.DataFrame:
    try:
        frame = storage.read_table(uri)
    except FileNotFoundError:  # nothing rolled yet
        frame = pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
    return _with_columns(frame, columns)


def _with_columns(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    missing = {name: pd.Series(None, index=frame.index, dtype=object) for name in columns if name not in frame}
    return frame.assign(**missing) if missing else frame


def epoch_micros(timestamps: pd.Series) -> pd.Series:
    """Microseconds since the epoch: from datetimes (naive ones read as UTC) or from epoch seconds."""
    if pd.api.types.is_numeric_dtype(timestamps) and not pd.api.types.is_bool_dtype(timestamps):
        return (timestamps.astype(np.float64) * MICROS).round().astype(np.int64)
    moments = pd.to_datetime(timestamps, utc=True)
    return moments.dt.tz_convert(None).astype("datetime64[us]").astype(np.int64)


# ----------------------------------------------------------------------------------------------------
# Who is in which arm, and which events count


def _tagged(frame: pd.DataFrame, columns: Sequence[str], name: str) -> pd.DataFrame:
    frame = _with_columns(frame, columns)
    frame = frame[frame["experiment"].eq(name).fillna(False).astype(bool)]
    return frame.assign(timestamp=epoch_micros(frame["timestamp"])).reset_index(drop=True)


def _assigned(experiment: Experiment, impressions: pd.DataFrame) -> tuple[pd.DataFrame, list[str], int]:
    """The experiment's impressions of visitors in exactly one of its arms; the visitors left out for
    naming several arms; the number of impressions left out for naming no arm of the experiment."""
    shown = _tagged(impressions, IMPRESSION_COLUMNS, experiment.name)
    known = shown["arm"].isin([arm.name for arm in experiment.arms])
    shown = shown[known]
    arms_per_visitor = shown.groupby("customer_id")["arm"].nunique()
    several = sorted(arms_per_visitor.index[arms_per_visitor > 1])
    return shown[~shown["customer_id"].isin(several)].reset_index(drop=True), several, int((~known).sum())


def _counted_events(experiment: Experiment, events: pd.DataFrame, shown: pd.DataFrame) -> pd.DataFrame:
    """The experiment's events of its visitors, from each visitor's first impression on."""
    events = _tagged(events, EVENT_COLUMNS, experiment.name)
    first_seen = shown.groupby("customer_id")["timestamp"].min()
    since = events["customer_id"].map(first_seen)
    return events[since.notna() & (events["timestamp"] >= since)].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------
# Attribution


def attribute_events(events: pd.DataFrame, impressions: pd.DataFrame, window_s: float) -> pd.Series:
    """For each event (``events``' index), the request_id of the impression it is attributed to, or None.

    First the impression the event's ``request_id`` names, if it showed the event's product to the same
    visitor; else the latest impression of the visitor showing the product at or before the event, at
    most ``window_s`` earlier. ``timestamp`` as datetimes or epoch seconds; no experiment filtering.
    """
    events = _with_columns(events, EVENT_COLUMNS)
    return _attribute(events.assign(timestamp=epoch_micros(events["timestamp"])),
                      impressions.assign(timestamp=epoch_micros(impressions["timestamp"])), window_s)


def _attribute(events: pd.DataFrame, impressions: pd.DataFrame, window_s: float) -> pd.Series:
    """:func:`attribute_events` on frames whose ``timestamp`` is already microseconds since the epoch."""
    slots = _slots(impressions)
    attributed = pd.Series(None, index=events.index, dtype=object)
    named = _by_request_id(events, slots)
    attributed[named.index] = named
    rest = events[attributed.isna() & events["event_type"].isin(EVENT_TYPES)]
    windowed = _by_window(rest, slots, round(window_s * MICROS))
    attributed[windowed.index] = windowed
    return attributed.astype(object).where(attributed.notna(), None)


def _slots(impressions: pd.DataFrame) -> pd.DataFrame:
    """One row per (impression, product shown): request_id, customer_id, product_id, timestamp, touchpoint
    (a request's carousels never repeat a product, so the pair names one carousel)."""
    impressions = _with_columns(impressions, ("touchpoint",))
    slots = impressions[["request_id", "customer_id", "timestamp", "touchpoint", "product_ids"]].explode("product_ids")
    slots = slots.rename(columns={"product_ids": "product_id"}).dropna(subset=["product_id"])
    return slots.drop_duplicates(["request_id", "customer_id", "product_id"]).reset_index(drop=True)


def _by_request_id(events: pd.DataFrame, slots: pd.DataFrame) -> pd.Series:
    keys = ["request_id", "customer_id", "product_id"]
    named = events[events["request_id"].notna() & events["event_type"].isin(EVENT_TYPES)]
    matched = named[keys].reset_index().merge(slots[keys], on=keys, how="inner")
    return pd.Series(matched["request_id"].to_numpy(), index=matched["index"].to_numpy(), dtype=object)


def _by_window(events: pd.DataFrame, slots: pd.DataFrame, window_us: int) -> pd.Series:
    if events.empty or slots.empty:
        return pd.Series(dtype=object)
    left = events[["customer_id", "product_id", "timestamp"]].reset_index().sort_values("timestamp", kind="stable")
    right = slots.rename(columns={"request_id": "shown_in", "timestamp": "shown_at"})
    right = right.sort_values(["shown_at", "shown_in"], kind="stable")  # ties: the last request id wins
    matched = pd.merge_asof(left, right, left_on="timestamp", right_on="shown_at", by=["customer_id", "product_id"],
                            direction="backward", tolerance=window_us, allow_exact_matches=True)
    matched = matched.dropna(subset=["shown_in"])
    return pd.Series(matched["shown_in"].to_numpy(), index=matched["index"].to_numpy(), dtype=object)


# ----------------------------------------------------------------------------------------------------
# Per-visitor sums: the sample every metric is computed from


def _per_visitor(shown: pd.DataFrame, events: pd.DataFrame, prices: Mapping[str, float]) -> pd.DataFrame:
    """One row per visitor: arm, first_seen, the sums of :data:`METRICS`, first_purchase (µs or NaN) and, per
    touchpoint t, ``impressions:t`` and ``clicks:t`` (:func:`_touchpoint_sums`)."""
    visitors = shown.groupby("customer_id").agg(arm=("arm", "first"), impressions=("request_id", "size"),
                                                first_seen=("timestamp", "min"))
    visitors["visitors"] = 1
    attributed = events[events["attributed_to"].notna()]
    counts = attributed.groupby(["customer_id", "event_type"]).size().unstack(fill_value=0)
    for column, event_type in (("clicks", CLICK), ("add_to_bag", ADD_TO_BAG)):
        visitors[column] = counts.get(event_type, pd.Series(dtype=np.int64)).reindex(visitors.index, fill_value=0)
    purchases = _purchases(events, prices)
    sums = purchases.groupby("customer_id").agg(revenue=("price", "sum"), orders=("day", "nunique"),
                                               first_purchase=("timestamp", "min"))
    visitors = visitors.join(sums)
    visitors[["revenue", "orders"]] = visitors[["revenue", "orders"]].fillna(0)
    visitors["converted"] = (visitors["orders"] > 0).astype(np.int64)
    return visitors.join(_touchpoint_sums(shown, attributed))


def _touchpoint_sums(shown: pd.DataFrame, attributed: pd.DataFrame) -> pd.DataFrame:
    """Per visitor and touchpoint t: ``impressions:t`` and ``clicks:t``, the clicks attributed to a product
    shown by one of the visitor's impressions of t (events carry ``attributed_to``, a request id)."""
    slots = _slots(shown).drop_duplicates(["request_id", "product_id"])
    touchpoint = slots.set_index(["request_id", "product_id"])["touchpoint"]
    clicks = attributed[attributed["event_type"] == CLICK]
    keys = pd.MultiIndex.from_arrays([clicks["attributed_to"].to_numpy(), clicks["product_id"].to_numpy()])
    clicked_on = clicks.assign(touchpoint=touchpoint.reindex(keys).to_numpy())
    visitors = pd.Index(shown["customer_id"].unique(), name="customer_id")
    impressions = shown.groupby(["customer_id", "touchpoint"]).size().unstack(fill_value=0)
    impressions = impressions.reindex(index=visitors, fill_value=0)
    clicked = clicked_on.groupby(["customer_id", "touchpoint"]).size().unstack(fill_value=0)
    clicked = clicked.reindex(index=visitors, columns=impressions.columns, fill_value=0)
    return pd.concat([impressions.add_prefix("impressions:"), clicked.add_prefix("clicks:")], axis=1)


def _purchases(events: pd.DataFrame, prices: Mapping[str, float]) -> pd.DataFrame:
    """Counted purchases with their price (NaN when ``prices`` lacks the product) and UTC day number."""
    purchases = events[events["event_type"] == PURCHASE]
    known = {product: prices.get(product) for product in purchases["product_id"].unique()}
    return purchases.assign(price=purchases["product_id"].map(known).astype(np.float64),
                            day=purchases["timestamp"] // MICROS_PER_DAY)


# ----------------------------------------------------------------------------------------------------
# The delta method


@dataclass(frozen=True)
class RatioEstimate:
    """``sum(numerator) / sum(denominator)`` over visitors and its delta-method variance (NaN: undefined)."""

    value: float
    variance: float
    visitors: int


def ratio_estimate(numerator: np.ndarray, denominator: np.ndarray) -> RatioEstimate:
    """The ratio of per-visitor sums and the variance of that ratio over visitors (Deng et al. 2018, eq. 3):
    Var(X̄/Ȳ) ≈ (σx²/μy² − 2 μx σxy/μy³ + μx² σy²/μy⁴) / n, sample (co)variances with n − 1."""
    x, y = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    n = len(x)
    if n == 0 or y.sum() == 0:
        return RatioEstimate(math.nan, math.nan, n)
    mx, my = x.mean(), y.mean()
    if n < MIN_VISITORS:
        return RatioEstimate(float(mx / my), math.nan, n)
    cov = np.cov(x, y, ddof=1)
    variance = (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n
    return RatioEstimate(float(mx / my), float(max(variance, 0.0)), n)


def difference_intervals(control: RatioEstimate, arm: RatioEstimate, confidence: float) -> tuple[Interval, Interval]:
    """Normal intervals of (arm − control) and of (arm / control − 1) for independent arms; the lift's
    variance by the delta method again: Var(a/c) ≈ Var(a)/c² + a² Var(c)/c⁴."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    difference = arm.value - control.value
    spread = math.sqrt(arm.variance + control.variance)
    if control.value == 0 or not math.isfinite(control.value):
        lift, lift_spread = math.nan, math.nan
    else:
        lift = arm.value / control.value - 1
        lift_spread = math.sqrt(arm.variance / control.value**2 + arm.value**2 * control.variance / control.value**4)
    return (Interval(difference, difference - z * spread, difference + z * spread, confidence),
            Interval(lift, lift - z * lift_spread, lift + z * lift_spread, confidence))


def verdict(difference: Interval) -> str:
    """The gate's rule (``gate._compare``, no allowed change) on the interval of (arm − control)."""
    if not (math.isfinite(difference.low) and math.isfinite(difference.high)):
        return NO_DATA
    if difference.high < 0:
        return WORSE
    if difference.low > 0:
        return BETTER
    return EQUAL


# ----------------------------------------------------------------------------------------------------
# Assembling the report


def experiment_report(experiment: Experiment, events: pd.DataFrame, impressions: pd.DataFrame,
                      prices: Mapping[str, float], config: ExperimentConfig,
                      primary_metric: str | None = None) -> ExperimentReport:
    """The report of ``experiment`` from the log's ``events`` and ``impressions`` (as
    :func:`read_experiment_log` returns them; ``timestamp`` as datetimes or epoch seconds) and the
    products' ``prices``; the verdict is ``primary_metric``'s (default ``config.primary_metric``). See the
    module notes for what counts and how."""
    primary_metric = primary_metric or config.primary_metric
    if primary_metric not in METRICS:
        raise ValueError(f"primary_metric must be one of {sorted(METRICS)}, got {primary_metric!r}")
    shown, several, unknown = _assigned(experiment, impressions)
    counted = _counted_events(experiment, events, shown)
    counted["attributed_to"] = _attribute(counted, shown, config.attribution_window_s)
    visitors = _per_visitor(shown, counted, prices)
    unpriced = int(_purchases(counted, prices)["price"].isna().sum())
    errors = DataErrors(len(several), tuple(several[:MAX_EXAMPLES]), unknown, unpriced)
    comparisons = _comparisons(experiment, visitors, config.confidence)
    by_touchpoint = _touchpoint_comparisons(experiment, visitors, config.confidence)
    sample_ratio = _sample_ratio(experiment, visitors, config.srm_p_value)
    verdicts = {c.arm: INVALID if sample_ratio.detected else c.verdict
                for c in comparisons if c.metric == primary_metric}
    return ExperimentReport(
        experiment.name, experiment.to_dict(), _period(shown), primary_metric, config.confidence,
        config.attribution_window_s, tuple(_arm_result(arm, visitors, shown, counted) for arm in experiment.arms),
        comparisons, sample_ratio, errors, _daily(experiment, visitors, _last(shown, counted)), by_touchpoint,
        verdicts, _overall(verdicts))


def _overall(verdicts: Mapping[str, str]) -> str:
    if len(verdicts) == 1:
        return next(iter(verdicts.values()))
    return "; ".join(f"{arm}: {text}" for arm, text in verdicts.items())


def _last(shown: pd.DataFrame, counted: pd.DataFrame) -> int:
    """The time (µs) of the latest counted impression or event (0 when there are none)."""
    return int(max(shown["timestamp"].max() if len(shown) else 0, counted["timestamp"].max() if len(counted) else 0))


def _period(shown: pd.DataFrame) -> tuple[str | None, str | None]:
    if shown.empty:
        return None, None
    return _time(int(shown["timestamp"].min())), _time(int(shown["timestamp"].max()))


def _time(micros: int, form: str = TIME_FORMAT) -> str:
    return datetime.fromtimestamp(micros / MICROS, timezone.utc).strftime(form)


def _arm_result(arm: Arm, visitors: pd.DataFrame, shown: pd.DataFrame, counted: pd.DataFrame) -> ArmResult:
    mine = visitors[visitors["arm"] == arm.name]
    its_events = counted[counted["customer_id"].isin(mine.index)]
    by_type = its_events["event_type"].value_counts()
    attributed = its_events[its_events["attributed_to"].notna()]["event_type"].value_counts()
    values = {name: ratio_estimate(mine[x], mine[y]).value for name, (x, y) in METRICS.items()}
    return ArmResult(
        arm.name, arm.version, arm.share, len(mine), int(mine["impressions"].sum()),
        int(shown.loc[shown["arm"] == arm.name, "fallback"].eq(True).sum()),
        {kind: int(by_type.get(kind, 0)) for kind in EVENT_TYPES},
        {kind: int(attributed.get(kind, 0)) for kind in EVENT_TYPES},
        int(mine["orders"].sum()), float(mine["revenue"].sum()),
        {name: None if math.isnan(value) else value for name, value in values.items()})


def _comparisons(experiment: Experiment, visitors: pd.DataFrame, confidence: float) -> tuple[Comparison, ...]:
    control = visitors[visitors["arm"] == experiment.control.name]
    found = []
    for arm in experiment.arms[1:]:
        mine = visitors[visitors["arm"] == arm.name]
        for metric, (x, y) in METRICS.items():
            found.append(_compared(arm.name, metric, control[x], control[y], mine[x], mine[y], confidence))
    return tuple(found)


def _touchpoint_comparisons(experiment: Experiment, visitors: pd.DataFrame,
                            confidence: float) -> dict[str, tuple[Comparison, ...]]:
    """Per touchpoint, each arm's CTR there against control's (visitors without an impression there add 0 to
    both sums, so they change the ratio's variance, not its value)."""
    control = visitors[visitors["arm"] == experiment.control.name]
    arms = {arm.name: visitors[visitors["arm"] == arm.name] for arm in experiment.arms[1:]}
    found = {}
    for name in [column.removeprefix("impressions:") for column in visitors if column.startswith("impressions:")]:
        x, y = f"clicks:{name}", f"impressions:{name}"
        found[name] = tuple(_compared(arm, "ctr", control[x], control[y], mine[x], mine[y], confidence)
                            for arm, mine in arms.items())
    return found


def _compared(arm: str, metric: str, control_numerator: pd.Series, control_denominator: pd.Series,
              numerator: pd.Series, denominator: pd.Series, confidence: float) -> Comparison:
    """One metric of one arm against control from the two arms' per-visitor sums."""
    base, value = ratio_estimate(control_numerator, control_denominator), ratio_estimate(numerator, denominator)
    difference, lift = difference_intervals(base, value, confidence)
    return Comparison(arm, metric, base.value, value.value, difference, lift, verdict(difference))


def _sample_ratio(experiment: Experiment, visitors: pd.DataFrame, p_value: float) -> SampleRatio:
    counts = visitors["arm"].value_counts()
    observed = np.array([counts.get(arm.name, 0) for arm in experiment.arms], np.float64)
    shares = np.array([arm.share for arm in experiment.arms])
    expected = shares / shares.sum() * observed.sum()
    names = [arm.name for arm in experiment.arms]
    if observed.sum() == 0:
        return SampleRatio(dict.fromkeys(names, 0), dict.fromkeys(names, 0.0), None, None, False)
    test = stats.chisquare(observed, expected)
    return SampleRatio({n: int(o) for n, o in zip(names, observed)}, {n: float(e) for n, e in zip(names, expected)},
                       float(test.statistic), float(test.pvalue), bool(test.pvalue < p_value))


def _daily(experiment: Experiment, visitors: pd.DataFrame, last: int) -> tuple[DailyPoint, ...]:
    """Per arm and UTC day, from the first impression to the day of ``last`` (µs; the latest counted
    record): new visitors, and the cumulative visitors and conversion at the day's end (cumulative lines
    settle as the experiment runs; daily ones jump)."""
    if visitors.empty:
        return ()
    seen = visitors["first_seen"] // MICROS_PER_DAY
    bought = visitors["first_purchase"] // MICROS_PER_DAY
    days = range(int(seen.min()), last // MICROS_PER_DAY + 1)
    points = []
    for arm in experiment.arms:
        mine = visitors["arm"] == arm.name
        for day in days:
            total = int((mine & (seen <= day)).sum())
            converted = int((mine & (bought <= day)).sum())
            points.append(DailyPoint(_time(day * MICROS_PER_DAY, DAY_FORMAT), arm.name,
                                     int((mine & (seen == day)).sum()), total, converted / total if total else None))
    return tuple(points)


# ----------------------------------------------------------------------------------------------------
# Writing it


def report_from_log(experiment: Experiment, log_dir: str, output_dir: str, config: ExperimentConfig,
                    catalogue: str | None = None) -> ExperimentReport:
    """Read a shop's log, report ``experiment`` and write ``report.json`` and ``report.html`` to ``output_dir``:
    what ``fashionrec experiment report`` and the KFP component run. Prices come from ``catalogue`` (default: the
    ``catalogue.parquet`` the shop keeps beside its log)."""
    events, impressions = read_experiment_log(log_dir)
    report = experiment_report(experiment, events, impressions, log_prices(log_dir, catalogue), config)
    write_experiment_report(report, output_dir)
    return report


def log_prices(log_dir: str, catalogue: str | None = None) -> dict[str, float]:
    """Each product's price: from ``catalogue``, or the ``catalogue.parquet`` the shop keeps beside its log."""
    frame = storage.read_table(catalogue or storage.join(log_dir, CATALOGUE_FILE))
    return dict(zip(frame["product_id"], frame["price"].astype(float)))


def write_experiment_report(report: ExperimentReport, output_dir: str) -> dict[str, str]:
    """Write ``report.json`` (:meth:`ExperimentReport.to_dict`) and a self-contained ``report.html`` into
    ``output_dir`` (local or gs://); return their URIs by kind ("json", "html")."""
    uris = {"json": storage.join(output_dir, JSON_FILE), "html": storage.join(output_dir, HTML_FILE)}
    storage.write_json(uris["json"], report.to_dict())
    with storage.open_output(uris["html"]) as stream:
        stream.write(render_experiment_report(report).encode("utf-8"))
    return uris


def render_experiment_report(report: ExperimentReport) -> str:
    """The report as one HTML page, its plots embedded as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    data = report.to_dict()
    figures = {f"Relative lift against {report.arms[0].name}, {report.confidence:.0%} intervals": _lift_figure(report)}
    if report.daily:
        figures["Cumulative visitors and conversion by day (UTC)"] = _daily_figure(report)
    return _template().render(r=data, figures=figures, labels=METRIC_LABELS,
                              tone=_tone(report.verdict), primary_label=METRIC_LABELS[report.primary_metric],
                              has_errors=any(data["data_errors"][k] for k in
                                             ("visitors_in_several_arms", "impressions_with_unknown_arm",
                                              "purchases_without_price")))


def _tone(text: str) -> str:
    """The banner's colour class for a verdict."""
    return {BETTER: "better", WORSE: "worse", INVALID: "invalid"}.get(text, "neutral")


def _template() -> jinja2.Template:
    """Autoescaped (names are user data) and strict (a template typo fails a test, not the page)."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["value"] = _format_value
    env.filters["change"] = _format_change
    env.filters["percent"] = lambda v: "–" if v is None else f"{v:.1%}"
    env.filters["count"] = lambda v: f"{v:,}"
    return env.from_string(TEMPLATE)


def _format_value(value: float | None, metric: str) -> str:
    if value is None:
        return "–"
    return f"{value:.2%}" if metric in RATE_METRICS else f"{value:,.2f}"


def _format_change(interval: Mapping[str, float | None], metric: str, relative: bool = False) -> str:
    """``+1.20 pp [−0.30, +2.70]``: a difference (points for rates) or a relative lift, with its interval."""
    def one(v: float | None) -> str:
        if v is None:
            return "–"
        if relative:
            return f"{v:+.1%}"
        return f"{v * 100:+.2f}" if metric in RATE_METRICS else f"{v:+,.2f}"
    unit = "" if relative or metric not in RATE_METRICS else " pp"
    return f"{one(interval['mean'])}{unit} [{one(interval['low'])}, {one(interval['high'])}]"


def _arm_colours(report: ExperimentReport) -> dict[str, str]:
    import matplotlib.pyplot as plt

    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {arm.name: cycle[index % len(cycle)] for index, arm in enumerate(report.arms)}


def _lift_figure(report: ExperimentReport) -> str:
    import matplotlib.pyplot as plt

    treated = [arm.name for arm in report.arms[1:]]
    colours = _arm_colours(report)
    figure, axis = plt.subplots(figsize=(10, 0.55 * len(METRICS) * len(treated) + 1.2))
    height = 0.8 / len(treated)
    for offset, name in enumerate(treated):
        lifts = [report.comparison(name, metric).lift for metric in METRICS]
        centres = np.array([lift.mean for lift in lifts]) * 100
        errors = np.array([[lift.mean - lift.low, lift.high - lift.mean] for lift in lifts]).T * 100
        axis.errorbar(centres, np.arange(len(METRICS)) + offset * height, xerr=errors, fmt="o", capsize=4,
                      color=colours[name], label=name)
    axis.axvline(0, color="#555", linewidth=1)
    axis.set_yticks(np.arange(len(METRICS)) + height * (len(treated) - 1) / 2)
    axis.set_yticklabels([METRIC_LABELS[m] + (" (primary)" if m == report.primary_metric else "") for m in METRICS])
    axis.invert_yaxis()
    axis.set_xlabel(f"lift against {report.arms[0].name} (%)")
    axis.legend()
    return png_base64(figure)


def _daily_figure(report: ExperimentReport) -> str:
    import matplotlib.pyplot as plt
    from matplotlib import dates

    colours = _arm_colours(report)
    days = pd.to_datetime(sorted({p.date for p in report.daily}))  # every arm has a point on every day
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for arm in report.arms:
        points = [p for p in report.daily if p.arm == arm.name]
        axes[0].plot(days, [p.visitors for p in points], marker="o", color=colours[arm.name], label=arm.name)
        axes[1].plot(days, [np.nan if p.conversion is None else p.conversion * 100 for p in points], marker="o",
                     color=colours[arm.name], label=arm.name)
    axes[0].set_title("visitors (cumulative)")
    axes[1].set_title("conversion (cumulative, %)")
    for axis in axes:
        axis.legend()
        axis.xaxis.set_major_locator(dates.DayLocator(interval=max(1, math.ceil(len(days) / MAX_DATE_TICKS))))
        axis.xaxis.set_major_formatter(dates.DateFormatter("%b %d"))
        axis.tick_params(axis="x", labelrotation=30)
    return png_base64(figure)


TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Experiment {{ r.experiment }}</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;
padding:0 16px;color:#222;line-height:1.4}
h1{margin-bottom:2px}h2{margin-top:32px;border-bottom:1px solid #eee;padding-bottom:4px}
.muted{color:#666}.small{font-size:.9em}
.banner{padding:14px 18px;border-radius:6px;margin:18px 0;font-size:1.3em;border:1px solid}
.banner .detail{display:block;font-size:.7em;margin-top:4px}
.better{background:#e8f5e9;border-color:#2e7d32;color:#1b5e20}
.worse{background:#ffebee;border-color:#c62828;color:#b71c1c}
.invalid{background:#fff3e0;border-color:#ef6c00;color:#e65100}
.neutral{background:#f4f4f4;border-color:#999;color:#333}
table{border-collapse:collapse;margin:8px 0 16px;font-size:.95em}
td,th{border:1px solid #ddd;padding:5px 9px;text-align:right}th{background:#fafafa}
td.name,th.name{text-align:left}td.verdict{text-align:left;white-space:nowrap}
tr.primary td{font-weight:600;background:#fbfbf2}
.v-better{color:#2e7d32}.v-worse{color:#c62828}.v-invalid{color:#e65100}
.note{padding:8px 12px;border-left:4px solid #ef6c00;background:#fff8f0}
img{max-width:100%}
</style></head><body>
<h1>Experiment <code>{{ r.experiment }}</code></h1>
<div class="muted">
{% if r.period[0] %}{{ r.period[0] }} to {{ r.period[1] }} &middot; {% endif %}
{{ r.arms | length }} arms, control <strong>{{ r.arms[0].name }}</strong> &middot;
{{ '{:.0%}'.format(r.confidence) }} intervals &middot; attribution window {{ '%g' % (r.attribution_window_s / 3600) }} h
</div>

<div class="banner {{ tone }}">Verdict: <strong>{{ r.verdict }}</strong>
<span class="detail">primary metric: {{ primary_label }}, each arm against {{ r.arms[0].name }}</span></div>

<p class="{{ 'note' if r.sample_ratio.detected else 'small' }}">
<strong>Sample ratio {{ 'MISMATCH' if r.sample_ratio.detected else 'check passed' }}:</strong>
visitors {% for arm in r.arms %}{{ arm.name }} {{ '{:,}'.format(r.sample_ratio.visitors[arm.name]) }}
({{ arm.share | percent }} declared){{ ', ' if not loop.last }}{% endfor %};
chi-square p = {{ '%.3g' % r.sample_ratio.p_value if r.sample_ratio.p_value is not none else '–' }}
{% if r.sample_ratio.detected %}&mdash; the split is broken, so no comparison below can be trusted.{% endif %}
</p>
{% if has_errors %}<p class="note">Left out or unvalued:
{{ r.data_errors.visitors_in_several_arms }} visitor(s) whose impressions name two arms
{% if r.data_errors.examples %}(e.g. {{ r.data_errors.examples | join(', ') }}){% endif %};
{{ r.data_errors.impressions_with_unknown_arm }} impression(s) naming no arm of the experiment;
{{ r.data_errors.purchases_without_price }} purchase(s) of products without a price.</p>{% endif %}

<h2>Arms</h2>
<table><tr><th class="name">arm</th><th>version</th><th>share</th><th>visitors</th><th>impressions</th>
<th>fallback impressions</th><th>clicks</th><th>add to bag</th><th>purchases</th><th>orders</th><th>revenue</th></tr>
{% for arm in r.arms %}<tr><td class="name">{{ arm.name }}
{%- if loop.first and arm.name != 'control' %} <span class="muted">(control)</span>{% endif %}</td>
<td>v{{ arm.version }}</td><td>{{ arm.share | percent }}</td><td>{{ arm.visitors | count }}</td>
<td>{{ arm.impressions | count }}</td><td>{{ arm.fallback_impressions | count }}</td>
<td>{{ arm.attributed.click | count }}</td><td>{{ arm.attributed.add_to_bag | count }}</td>
<td>{{ arm.events.purchase | count }}</td><td>{{ arm.orders | count }}</td>
<td>{{ '{:,.2f}'.format(arm.revenue) }}</td></tr>
{% endfor %}</table>
<table><tr><th class="name">arm</th>{% for m in labels %}<th>{{ labels[m] }}</th>{% endfor %}</tr>
{% for arm in r.arms %}<tr><td class="name">{{ arm.name }}</td>
{% for m in labels %}<td>{{ arm.metrics[m] | value(m) }}</td>{% endfor %}</tr>{% endfor %}
</table>
<p class="small muted">Clicks and add-to-bag are the ones attributed to an impression; purchases, orders and revenue
count every purchase of the arm's visitors from their first impression on. Fallback impressions were served without
a model: a health signal, not a metric.</p>

<h2>Differences to {{ r.arms[0].name }}</h2>
<table><tr><th class="name">metric</th><th class="name">arm</th><th>{{ r.arms[0].name }}</th><th>arm</th>
<th>difference [interval]</th><th>lift [interval]</th><th class="name">verdict</th></tr>
{% for c in r.comparisons %}<tr class="{{ 'primary' if c.metric == r.primary_metric }}">
<td class="name">{{ labels[c.metric] }}</td><td class="name">{{ c.arm }}</td>
<td>{{ c.control | value(c.metric) }}</td><td>{{ c.value | value(c.metric) }}</td>
<td>{{ c.difference | change(c.metric) }}</td><td>{{ c.lift | change(c.metric, true) }}</td>
<td class="verdict v-{{ c.verdict.split(' ')[0] }}">{{ c.verdict }}</td></tr>{% endfor %}
</table>

{% if r.by_touchpoint %}<h2>CTR by touchpoint</h2>
<table><tr><th class="name">touchpoint</th><th class="name">arm</th><th>{{ r.arms[0].name }}</th><th>arm</th>
<th>difference [interval]</th><th>lift [interval]</th><th class="name">verdict</th></tr>
{% for touchpoint, compared in r.by_touchpoint.items() %}{% for c in compared %}<tr>
<td class="name">{{ touchpoint }}</td><td class="name">{{ c.arm }}</td>
<td>{{ c.control | value(c.metric) }}</td><td>{{ c.value | value(c.metric) }}</td>
<td>{{ c.difference | change(c.metric) }}</td><td>{{ c.lift | change(c.metric, true) }}</td>
<td class="verdict v-{{ c.verdict.split(' ')[0] }}">{{ c.verdict }}</td></tr>{% endfor %}{% endfor %}
</table>
<p class="small muted">Clicks attributed to a touchpoint's impressions over its impressions: a model change shows most
where the model alone orders what is shown.</p>{% endif %}

{% for title, image in figures.items() %}<h2>{{ title }}</h2>
<img alt="{{ title }}" src="data:image/png;base64,{{ image }}"/>{% endfor %}

<h2>How these numbers are computed</h2>
<ul class="small">
<li>Visitors are customers or sessions with at least one impression of the experiment; their arm is the arm on
their impressions. Events count from a visitor's first impression on.</li>
<li>An event is attributed to the impression its request id names, when that impression showed the product to the
visitor; otherwise to the visitor's latest impression showing the product at most
{{ '%g' % r.attribution_window_s }} s before it.</li>
<li>CTR and add-to-bag rate are attributed events per impression; conversion is the share of visitors with a
purchase; an order is one visitor's purchases on one UTC day (the log has no order ids).</li>
<li>Every metric is a ratio of per-visitor sums; intervals come from the delta method over visitors (Deng, Knoblich
&amp; Lu 2018), arms independent. A metric is better or worse only when its whole interval lies on one side of 0.</li>
</ul>
</body></html>
"""
