"""The publishing gate: a model is blessed only when every check passes.

Two kinds of checks, in the spirit of TFMA's value and change thresholds:

* **value checks** on the candidate alone: an absolute floor on the gate metric and a lift over the
  strongest baseline the evaluation computed (popularity, recent popularity, iALS, EASE);
* **change checks** against the currently published model, decided on a paired bootstrap interval
  over customers: *worse* when the whole interval of (candidate − published) lies below
  ``allowed_change``, *better* when it lies above zero, otherwise *equal within noise*, which follows
  the configured policy. Before anything is published, the ``first_run`` policy decides.

The blessing JSON records every check with its figures, interval and verdict; ``publish`` refuses
anything not blessed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fashionrec.config import EvaluateConfig
from fashionrec.evaluation.bootstrap import paired_difference



@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    passed: bool
    description: str
    verdict: str = ""
    interval: tuple[float, float] | None = None


def gate_checks(model: dict[str, float], baselines: dict[str, dict[str, float]], config: EvaluateConfig) -> list[Check]:
    """The candidate must clear an absolute floor and beat the strongest of ``baselines`` (by name: their
    metrics) on the gate metric by the configured lift: a model a simple baseline beats is not published."""
    metric = config.gate_metric
    value = model[metric]
    strongest = max(baselines, key=lambda name: baselines[name][metric])
    required_lift = baselines[strongest][metric] * (1.0 + config.min_lift_over_baseline)
    return [
        Check(f"{metric} >= floor", value, config.min_gate_metric, value >= config.min_gate_metric,
              f"candidate {metric} must be at least {config.min_gate_metric}"),
        Check(f"{metric} beats the strongest baseline ({strongest})", value, required_lift, value > required_lift,
              f"candidate {metric} must exceed the strongest baseline's ({strongest}: "
              f"{baselines[strongest][metric]:.4f}) by {config.min_lift_over_baseline:.0%}"),
    ]


def change_checks(
    candidate: dict[str, np.ndarray], published: dict[str, np.ndarray] | None, version: int | None,
    config: EvaluateConfig, scope: str = "",
) -> list[Check]:
    """Paired-bootstrap comparison with the published model on each of ``config.compare_metrics``.

    ``scope`` names the slice the per-customer values come from ("" = every holdout customer).
    """
    if published is None:
        blessed = config.first_run == "bless"
        return [Check("first run", 0.0, 0.0, blessed, "no model is published yet; first_run policy "
                      f"'{config.first_run}' applies", verdict="first run")]
    return [_compare(metric, candidate[metric], published[metric], version, config, scope)
            for metric in config.compare_metrics]


def _compare(metric: str, candidate: np.ndarray, published: np.ndarray, version: int | None,
             config: EvaluateConfig, scope: str) -> Check:
    interval = paired_difference(candidate, published, config.confidence, config.bootstrap_resamples, config.seed)
    if interval.high < config.allowed_change:
        verdict, passed = "worse", False
    elif interval.low > 0:
        verdict, passed = "better", True
    else:
        verdict, passed = "equal within noise", config.equal_within_noise == "bless"
    return Check(
        f"{metric} vs published v{version}" + (f" on {scope}" if scope else ""), interval.mean, config.allowed_change, passed,
        f"{config.confidence:.0%} interval of candidate - published {metric} is "
        f"[{interval.low:+.4f}, {interval.high:+.4f}]: {verdict}",
        verdict=verdict, interval=(interval.low, interval.high),
    )


def blessing(checks: list[Check], metrics: dict[str, dict[str, float]]) -> dict[str, object]:
    failed = [c for c in checks if not c.passed]
    return {
        "blessed": not failed,
        "reasons": [f"{c.name}: {c.verdict or f'{c.value:.4f} vs {c.threshold:.4f}'}" for c in failed],
        "checks": [asdict(c) for c in checks],
        "metrics": metrics,
    }
