"""Checks of a Triton request's inputs, shared by the python models: each failure is that request's
error (:class:`RequestError`, sent back as the response's error), never the server's.

Part of :mod:`fashionrec.contract` (copied into every version folder under the same import path).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from fashionrec.contract import ops

def top_k_error(k: int, max_top_k: int) -> str | None:
    """Why a requested k cannot be served, or None when it can."""
    if not 1 <= k <= max_top_k:
        return f"TOP_K must be between 1 and {max_top_k}, got {k}"
    return None


def history_error(num_ids: int, weights: np.ndarray, max_history_length: int) -> str | None:
    """Why a history (ids + weights) cannot be served, or None when it can."""
    if weights.size != num_ids:
        return f"HISTORY_WEIGHTS has {weights.size} values but HISTORY_PRODUCT_IDS has {num_ids}"
    if num_ids > max_history_length:
        return f"history has {num_ids} products, more than max_history_length={max_history_length}"
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        return "HISTORY_WEIGHTS must be finite and non-negative"
    return None


BYTES_PREVIEW = 5  # unknown names quoted in an error message before "..."


class RequestError(ValueError):
    """A request the server refuses; the message goes back to that request's client unchanged."""


def decode(values: Iterable[object]) -> list[str]:
    """Triton BYTES tensor entries as str (they arrive as bytes; numpy str arrays are accepted too)."""
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values]


def _preview(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:BYTES_PREVIEW])
    return shown + (", ..." if len(names) > BYTES_PREVIEW else "")


def event_type_weights(event_types: Sequence[object], weights_by_type: Mapping[str, float]) -> np.ndarray:
    """The weight of each event type (str, or UTF-8 bytes as Triton sends them); RequestError naming the
    unknown types and the known ones."""
    weight_of = _weight_by_value(event_types, weights_by_type)
    return np.fromiter((weight_of[t] for t in event_types), dtype=np.float64, count=len(event_types))


def _weight_by_value(event_types: Sequence[object], weights_by_type: Mapping[str, float]) -> dict[object, float]:
    """{each distinct value of ``event_types``: its weight}, every value checked; RequestError naming the
    unknown ones. Only the distinct values are decoded: a history of thousands of events has a handful."""
    distinct = list(set(event_types))
    names = dict(zip(distinct, decode(distinct), strict=True))
    unknown = sorted({name for name in names.values() if name not in weights_by_type})
    if unknown:
        raise RequestError(f"unknown HISTORY_EVENT_TYPES {_preview(unknown)}; known: {', '.join(weights_by_type)}")
    return {value: float(weights_by_type[name]) for value, name in names.items()}


def check_history(num_ids: int, max_history_length: int) -> None:
    """An empty or too long history is refused: there is nothing (or too much) to pool."""
    if num_ids == 0:
        raise RequestError("HISTORY_PRODUCT_IDS is empty: a customer vector needs at least one product")
    if num_ids > max_history_length:
        raise RequestError(f"history has {num_ids} products, more than max_history_length={max_history_length}")


def request_weights(
    num_ids: int,
    aggregation: Mapping[str, object],
    event_types: Sequence[object] | None = None,  # str, or bytes as Triton sends them
    timestamps: np.ndarray | None = None,
    explicit_weights: np.ndarray | None = None,
    request_time: float | None = None,
) -> np.ndarray:
    """Pooling weight of each history event of one request, by :func:`ops.history_weights`.

    The event weight is the explicit weight when given, else the event type's weight from
    ``aggregation["event_weights"]``, else 1. Ages are (request_time - timestamp) in days when
    timestamps are given (request_time defaults to now). Every optional array must match the ids and is
    checked whole; events before the pooling window (``aggregation["window"]``) weigh 0 and their
    event types are only checked, not weighted.
    """
    for name, values in (("HISTORY_EVENT_TYPES", event_types), ("HISTORY_TIMESTAMPS", timestamps),
                         ("HISTORY_WEIGHTS", explicit_weights)):
        if values is not None and len(values) != num_ids:
            raise RequestError(f"{name} has {len(values)} values but HISTORY_PRODUCT_IDS has {num_ids}")
    window = int(aggregation.get("window", 0))  # type: ignore[call-overload]
    if explicit_weights is not None:
        event_weights = np.asarray(explicit_weights, dtype=np.float64)
        if not np.all(np.isfinite(event_weights)) or np.any(event_weights < 0):
            raise RequestError("HISTORY_WEIGHTS must be finite and non-negative")
    elif event_types is not None:
        weight_of = _weight_by_value(event_types, aggregation["event_weights"])  # type: ignore[arg-type]
        event_weights = np.zeros(num_ids)
        pooled = ops.pooling_window(num_ids, window)
        event_weights[pooled] = [weight_of[t] for t in event_types[pooled]]
    else:
        event_weights = np.ones(num_ids)
    ages = None
    if timestamps is not None:
        now = time.time() if request_time is None else float(request_time)
        ages = (now - np.asarray(timestamps, dtype=np.float64)) / ops.SECONDS_PER_DAY
    return ops.history_weights(event_weights, ages, str(aggregation["pooling"]),
                           float(aggregation["half_life_days"]),  # type: ignore[arg-type]
                           float(aggregation.get("half_life_events", 0.0)),  # type: ignore[arg-type]
                           window)


def known_rows(index: Mapping[object, int], product_ids: Sequence[object], what: str) -> np.ndarray:
    """Rows of product ids that must all be in the catalogue (candidates, hero); RequestError otherwise."""
    rows = ops.lookup_rows(index, product_ids)
    if np.any(rows < 0):
        unknown = decode([pid for pid, row in zip(product_ids, rows, strict=True) if row < 0])
        raise RequestError(f"unknown product ids in {what}: {_preview(unknown)}")
    return rows


def candidate_rows(
    index: Mapping[object, int],
    named_sets: Mapping[str, np.ndarray],
    candidate_ids: Sequence[object] | None,
    candidate_set: str | None,
    max_candidates: int,
) -> np.ndarray | None:
    """Catalogue rows a request may return, in the request's order; None = the whole catalogue."""
    if candidate_ids is not None and candidate_set is not None:
        raise RequestError("give CANDIDATE_PRODUCT_IDS or CANDIDATE_SET, not both")
    if candidate_set is not None:
        if candidate_set not in named_sets:
            raise RequestError(f"unknown CANDIDATE_SET {candidate_set!r}; published sets: "
                               f"{_preview(sorted(named_sets)) or 'none'}")
        return named_sets[candidate_set]
    if candidate_ids is None:
        return None
    if not 1 <= len(candidate_ids) <= max_candidates:
        raise RequestError(f"CANDIDATE_PRODUCT_IDS must hold 1 to {max_candidates} ids, got {len(candidate_ids)}")
    rows = known_rows(index, candidate_ids, "CANDIDATE_PRODUCT_IDS")
    if np.unique(rows).size != rows.size:
        raise RequestError("CANDIDATE_PRODUCT_IDS has duplicate product ids")
    return rows


def check_alphas(alphas: np.ndarray) -> None:
    """``similar``'s hero weights: each in [0, 1]; RequestError naming the first that is not."""
    bad = np.flatnonzero(~((alphas >= 0.0) & (alphas <= 1.0)))
    if bad.size:
        raise RequestError(f"ALPHA must be between 0 and 1, got {alphas[bad[0]]}")


REFUSED_METRIC = "fashionrec_requests_refused_total"  # Prometheus counter, labelled by model and version


class Refusals:
    """What a Triton python model does with a request it refuses as malformed: answer INVALID_ARG (HTTP
    400, gRPC INVALID_ARGUMENT: the caller must fix it, not retry) and count it in
    :data:`REFUSED_METRIC`. Why the count: Triton counts such an answer as a success of the python model
    and as a failure (reason OTHER) of its ensemble, like a real fault; alerts subtract the refusals.

    ``pb_utils`` is Triton's ``triton_python_backend_utils``, passed in: the contract imports only numpy.
    """

    def __init__(self, pb_utils: object, model_name: str, model_version: str) -> None:
        # the family must outlive its metric (Triton refuses to count into a deleted family): both kept
        self._family = pb_utils.MetricFamily(  # type: ignore[attr-defined]
            name=REFUSED_METRIC, description="requests refused as malformed (answered 400 / INVALID_ARGUMENT)",
            kind=pb_utils.MetricFamily.COUNTER)  # type: ignore[attr-defined]
        self._metric = self._family.Metric(labels={"model": model_name, "version": str(model_version)})
        self._pb_utils = pb_utils

    def response(self, error: Exception) -> object:
        """The refused request's response, counted."""
        self._metric.increment(1)
        pb = self._pb_utils
        return pb.InferenceResponse(error=pb.TritonError(str(error), pb.TritonError.INVALID_ARG))  # type: ignore[attr-defined]
