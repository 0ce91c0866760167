"""Paired bootstrap over customers: is the candidate really better or worse, or is it noise?

Both systems are scored on the same customers, so resampling customers and recomputing the mean
difference gives a confidence interval for the difference that respects the pairing
(``scipy.stats.bootstrap``, percentile intervals: they stay defined when every difference is equal).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """Mean of ``candidate - baseline`` and its two-sided confidence interval."""

    mean: float
    low: float
    high: float
    confidence: float


def paired_difference(
    candidate: np.ndarray, baseline: np.ndarray, confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of the mean per-customer difference (candidate − baseline)."""
    difference = np.asarray(candidate, np.float64) - np.asarray(baseline, np.float64)
    if difference.ndim != 1 or len(difference) == 0:
        raise ValueError("need one value per customer for both systems, and at least one customer")
    if np.all(difference == difference[0]):  # no spread: every resample has the same mean
        return Interval(float(difference[0]), float(difference[0]), float(difference[0]), confidence)
    return mean_intervals(difference[None, :], confidence, resamples, seed)[0]


def mean_intervals(samples: np.ndarray, confidence: float = 0.95, resamples: int = 1000, seed: int = 0,
                   ) -> list[Interval]:
    """Percentile-bootstrap intervals of each row's mean (``samples``: [rows, customers]), the customers
    resampled together for every row: one draw for many metrics of the same customers. Each row's interval
    is the one :func:`paired_difference` gives that row against zeros, with the same seed."""
    values = np.asarray(samples, np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError("need a [rows, customers] array with at least one customer")
    if len(values) == 0:
        return []
    if values.shape[1] == 1:  # one customer: every resample is that customer
        return [Interval(float(v), float(v), float(v), confidence) for v in values[:, 0]]
    result = stats.bootstrap((values,), np.mean, confidence_level=confidence, n_resamples=resamples, axis=-1,
                             method="percentile", vectorized=True, random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return [Interval(float(mean), float(low), float(high), confidence)
            for mean, low, high in zip(values.mean(axis=1), interval.low, interval.high, strict=True)]


def ratio_of_means(
    numerator: np.ndarray, denominator: np.ndarray, confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of ``mean(numerator) / mean(denominator)`` for two *independent*
    samples (e.g. cold-product recall over one set of customers, warm over another): each is
    resampled on its own. ``mean`` of the returned interval is the ratio itself."""
    samples = [np.asarray(values, np.float64) for values in (numerator, denominator)]
    if any(s.ndim != 1 or len(s) == 0 for s in samples) or samples[1].mean() == 0:
        raise ValueError("need two non-empty 1-D samples, the denominator's mean non-zero")
    ratio = float(samples[0].mean() / samples[1].mean())
    if all(np.all(s == s[0]) for s in samples):  # no spread: every resample has the same ratio
        return Interval(ratio, ratio, ratio, confidence)
    result = stats.bootstrap(samples, lambda a, b, axis=-1: a.mean(axis=axis) / b.mean(axis=axis),
                             confidence_level=confidence, n_resamples=resamples, method="percentile",
                             vectorized=True, random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Interval(ratio, float(interval.low), float(interval.high), confidence)


def paired_ratio_of_means(
    numerator: np.ndarray, denominator: np.ndarray, confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> Interval:
    """Percentile-bootstrap interval of ``mean(numerator) / mean(denominator)`` when both hold one value
    per customer for the same customers (e.g. the same products' recall before and after they were
    trained on): customers are resampled with both their values. ``mean`` is the ratio itself."""
    pairs = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    if pairs[0].ndim != 1 or pairs[0].shape != pairs[1].shape or len(pairs[0]) == 0 or pairs[1].mean() == 0:
        raise ValueError("need one value per customer in both, at least one customer, the denominator's mean non-zero")
    ratio = float(pairs[0].mean() / pairs[1].mean())
    if np.all(pairs[0] == pairs[0][0]) and np.all(pairs[1] == pairs[1][0]):  # no spread
        return Interval(ratio, ratio, ratio, confidence)
    result = stats.bootstrap(pairs, lambda a, b, axis=-1: a.mean(axis=axis) / b.mean(axis=axis), paired=True,
                             confidence_level=confidence, n_resamples=resamples, method="percentile",
                             vectorized=True, random_state=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Interval(ratio, float(interval.low), float(interval.high), confidence)
