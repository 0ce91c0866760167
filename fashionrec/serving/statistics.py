"""Where a request's time goes inside Triton: per-model statistics, differenced over a window of load.

Triton keeps cumulative counters per model version (``get_inference_statistics``): requests, executions
(batches), and nanoseconds spent queued, gathering inputs, computing and returning outputs. Taking them
before and after a load and subtracting gives, per step of an ensemble, the average time each request
spent in each phase and the average batch size the dynamic batcher formed. Response-cache hits and
misses come from the same counters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

PHASES = ("queue", "compute_input", "compute_infer", "compute_output")
TOTAL = "success"  # a request's whole time in the model, from arrival to response
CACHE_PHASES = ("cache_hit", "cache_miss")


@dataclasses.dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model (all versions summed): requests, executions, ns per phase."""

    requests: int
    executions: int
    phase_ns: Mapping[str, int]
    cache_counts: Mapping[str, int]

    def __add__(self, other: ModelCounters) -> ModelCounters:
        return self._merged(other, 1)

    def __sub__(self, earlier: ModelCounters) -> ModelCounters:
        return self._merged(earlier, -1)

    def _merged(self, other: ModelCounters, sign: int) -> ModelCounters:
        return ModelCounters(
            self.requests + sign * other.requests, self.executions + sign * other.executions,
            {p: n + sign * other.phase_ns.get(p, 0) for p, n in self.phase_ns.items()},
            {p: n + sign * other.cache_counts.get(p, 0) for p, n in self.cache_counts.items()})

    def per_request_us(self, phase: str) -> float:
        """Average µs a request spent in ``phase`` (0 when there was no request)."""
        return self.phase_ns.get(phase, 0) / self.requests / 1e3 if self.requests else 0.0

    @property
    def mean_batch(self) -> float:
        """Requests per execution: the batch the dynamic batcher formed (0 when idle)."""
        return self.requests / self.executions if self.executions else 0.0


def parse_statistics(payload: Mapping[str, Any]) -> dict[str, ModelCounters]:
    """Counters per model name from ``get_inference_statistics(as_json=True)`` (int64s arrive as text;
    absent counters are 0). Versions of one model are summed: a window of load may straddle a switch."""
    models: dict[str, ModelCounters] = {}
    for entry in payload.get("model_stats", []):
        stats = entry.get("inference_stats", {})
        counters = ModelCounters(
            requests=int(stats.get("success", {}).get("count", 0)),
            executions=int(entry.get("execution_count", 0)),
            phase_ns={p: int(stats.get(p, {}).get("ns", 0)) for p in (TOTAL, *PHASES)},
            cache_counts={p: int(stats.get(p, {}).get("count", 0)) for p in CACHE_PHASES},
        )
        name = entry["name"]
        models[name] = counters if name not in models else models[name] + counters
    return models


def read_statistics(client: Any) -> dict[str, ModelCounters]:
    """Every loaded model's counters, from a tritonclient.grpc InferenceServerClient."""
    return parse_statistics(client.get_inference_statistics(model_name="", as_json=True))


def window(before: Mapping[str, ModelCounters], after: Mapping[str, ModelCounters]) -> dict[str, ModelCounters]:
    """What happened between two readings, per model that served a request in between."""
    changed = {name: counters - before[name] if name in before else counters for name, counters in after.items()}
    return {name: counters for name, counters in changed.items() if counters.requests > 0}


def breakdown_rows(models: Mapping[str, ModelCounters], steps: list[str]) -> list[tuple[str, list[float]]]:
    """Per step (in ``steps`` order, skipping idle ones): requests, mean batch, µs per request in total
    and in each of :data:`PHASES`."""
    rows = []
    for name in steps:
        counters = models.get(name)
        if counters is not None:
            rows.append((name, [float(counters.requests), counters.mean_batch,
                                *(counters.per_request_us(p) for p in (TOTAL, *PHASES))]))
    return rows
