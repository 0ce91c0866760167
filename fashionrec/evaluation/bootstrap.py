"""Paired bootstrap over customers: is the candidate really better or worse, or is it noise?

Both systems are scored on the same customers, so resampling customers and recomputing the mean
difference gives a confidence interval for the difference that accounts for the pairing. Written with
numpy (a percentile bootstrap is a few lines) rather than pulling SciPy into the serving-free stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 100):  # bounded memory: 100 resamples of all customers at a time
        draws = rng.integers(0, len(difference), size=(min(100, resamples - start), len(difference)))
        means[start : start + len(draws)] = difference[draws].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(float(difference.mean()), float(low), float(high), confidence)
