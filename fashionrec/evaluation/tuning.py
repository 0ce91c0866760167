"""Choosing the baselines' settings on a validation period, so that the model is compared with their best.

A baseline with untuned settings is a weak baseline. Under the standard protocol each baseline gets its
own small grid (iALS: factors, regularisation, confidence alpha, event weights on or off; recent
popularity: the half-life; EASE: the L2 strength), every setting is scored on the validation customers
(a period before the test period, never the test period), and the one with the best ``metric`` is kept.
The result is an :class:`~fashionrec.config.EvaluateConfig` whose baseline fields hold the choices.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation import metrics
from fashionrec.evaluation.systems import System, available_baselines, baseline_system
from fashionrec.model.features import EvalExamples

SCORED_K = (10, 20)


@dataclass(frozen=True)
class BaselineGrid:
    """The settings tried for each tuned baseline (every combination for iALS)."""

    ials_factors: Sequence[int] = (64, 128, 256)
    ials_regularization: Sequence[float] = (0.01, 0.1, 1.0)
    ials_alpha: Sequence[float] = (1.0, 10.0, 40.0)
    ials_event_weights: Sequence[bool] = (True, False)
    recent_popularity_half_life_days: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 7.0, 14.0, 30.0, 90.0)
    # ML-1M's validation period chose 20 000, the top of the first grid, with NDCG@10 still rising: the grid
    # goes on until it falls, so that EASE is not held back by where the search stopped.
    ease_l2: Sequence[float] = (50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0,
                                100_000.0, 200_000.0)

    def settings(self) -> Iterator[tuple[str, dict[str, object]]]:
        """(baseline, EvaluateConfig overrides) for every setting of the grid."""
        for half_life in self.recent_popularity_half_life_days:
            yield "recent_popularity", {"recent_popularity_half_life_days": half_life}
        for l2 in self.ease_l2:
            yield "ease", {"ease_l2": l2}
        for factors, regularization, alpha, weights in itertools.product(
                self.ials_factors, self.ials_regularization, self.ials_alpha, self.ials_event_weights):
            yield "ials", {"ials_factors": factors, "ials_regularization": regularization, "ials_alpha": alpha,
                           "ials_event_weights": weights}


@dataclass(frozen=True)
class TunedBaselines:
    """The chosen settings (in ``config``) and every setting's validation metrics, by baseline."""

    config: EvaluateConfig
    chosen: dict[str, dict[str, object]]
    tried: dict[str, list[tuple[dict[str, object], dict[str, float]]]] = field(default_factory=dict)


def ranking_metrics(rows: np.ndarray, examples: EvalExamples, num_products: int) -> dict[str, float]:
    """Mean recall@10/20, NDCG@10/20, MRR and coverage@10 of ranked ``rows`` [customers, >= 20]."""
    values = metrics.per_customer(rows, examples.target_idxs, SCORED_K)
    means = {name: float(np.nanmean(v)) for name, v in values.items() if not name.startswith("precision")}
    return {**means, "coverage@10": metrics.catalogue_coverage(rows, 10, num_products)}


def tune_baselines(train_events: pd.DataFrame, product_ids: np.ndarray, examples: EvalExamples,
                   config: EvaluateConfig, grid: BaselineGrid = BaselineGrid(), metric: str = "ndcg@10",
                   ) -> TunedBaselines:
    """Score every setting of ``grid`` on ``examples`` (validation customers; their whole histories) and
    keep each baseline's best by ``metric``; ties keep the earlier setting."""
    available = available_baselines(len(product_ids), config)
    tried: dict[str, list[tuple[dict[str, object], dict[str, float]]]] = {}
    for name, overrides in grid.settings():
        if name in available:
            system = baseline_system(name, train_events, product_ids, dataclasses.replace(config, **overrides))
            tried.setdefault(name, []).append((overrides, _score(system, examples, len(product_ids))))
    chosen = {name: _best(results, metric) for name, results in tried.items() if results}
    tuned = dataclasses.replace(config, **{k: v for overrides in chosen.values() for k, v in overrides.items()})
    return TunedBaselines(tuned, chosen, tried)


def _score(system: System, examples: EvalExamples, num_products: int) -> dict[str, float]:
    rows = system.rank(examples.history_idx, examples.history_weight, max(SCORED_K))
    return ranking_metrics(rows, examples, num_products)


def _best(results: list[tuple[Mapping[str, object], dict[str, float]]], metric: str) -> dict[str, object]:
    best = max(range(len(results)), key=lambda i: (results[i][1][metric], -i))
    return dict(results[best][0])
