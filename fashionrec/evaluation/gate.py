"""The publishing gate: a model is blessed only when every check passes.

The blessing is a JSON document that records each check with its figures and verdict; ``publish``
refuses anything not blessed. Later work adds confidence intervals and a comparison against the
currently published model; the document's shape leaves room for those checks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from fashionrec.config import EvaluateConfig


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    passed: bool
    description: str


def gate_checks(model: dict[str, float], popularity: dict[str, float], config: EvaluateConfig) -> list[Check]:
    """The candidate must clear an absolute floor and beat popularity by the configured lift."""
    metric = config.gate_metric
    value = model[metric]
    required_lift = popularity[metric] * (1.0 + config.min_lift_over_popularity)
    return [
        Check(f"{metric} >= floor", value, config.min_gate_metric, value >= config.min_gate_metric,
              f"candidate {metric} must be at least {config.min_gate_metric}"),
        Check(f"{metric} beats popularity", value, required_lift, value > required_lift,
              f"candidate {metric} must exceed popularity's {popularity[metric]:.4f} "
              f"by {config.min_lift_over_popularity:.0%}"),
    ]


def blessing(checks: list[Check], metrics: dict[str, dict[str, float]]) -> dict[str, object]:
    failed = [c for c in checks if not c.passed]
    return {
        "blessed": not failed,
        "reasons": [f"{c.name}: {c.value:.4f} vs {c.threshold:.4f}" for c in failed],
        "checks": [asdict(c) for c in checks],
        "metrics": metrics,
    }
