"""What each served touchpoint takes: the request tensors of ``recommend``, ``rerank`` and ``similar``.

One place builds them, for every client of the running Triton: the typed client of the app
(:mod:`fashionrec.app.client`, gRPC or HTTP, blocking) and the shop service's asynchronous gRPC client
(:mod:`fashionrec.online.triton`). Each turns a :data:`Tensor` into its own ``InferInput``. A request may
carry its context (:class:`RequestContext`: device, region, local hour and weekday). The server
validates what it is sent (k range, history length, ids, event types): the limits live in the published
model configuration, so these builders check nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionrec.config import ServingConfig

Tensor = tuple[str, np.ndarray, str]  # input name, value, Triton datatype
RANKED_OUTPUTS = ("PRODUCT_IDS", "SCORES")


@dataclass(frozen=True)
class History:
    """What a storefront knows of a customer, oldest first. Only ``product_ids`` is required.

    ``event_types`` (click, add_to_bag, save_for_later, purchase) weight events as published; explicit
    ``weights`` replace those; ``timestamps`` (epoch seconds) let recency pooling age events, measured
    from ``request_time`` (epoch seconds; default: the server's clock).
    """

    product_ids: Sequence[str]
    event_types: Sequence[str] | None = None
    timestamps: Sequence[int] | None = None
    weights: Sequence[float] | None = None
    request_time: int | None = None


@dataclass(frozen=True)
class RequestContext:
    """Where and when a customer asks, for a model with context tables (``fashionrec.contract.context``).

    Every field is optional: None is not sent (the server treats it as unknown, as it does a device or
    region the model never saw). ``hour`` is the customer's local hour (0-23), ``weekday`` the local day
    (Monday 0 .. Sunday 6); the server refuses values past those ranges. A version published without
    context tables takes the inputs and ignores them.
    """

    device: str | None = None
    region: str | None = None
    hour: int | None = None
    weekday: int | None = None


def as_history(history: History | Sequence[str]) -> History:
    """A History, given one or a plain list of product ids."""
    return history if isinstance(history, History) else History(list(history))


def infer_inputs(module: Any, tensors: Sequence[Tensor]) -> list[Any]:
    """The tensors as ``module``'s InferInputs (``tritonclient.grpc``, its ``aio`` or ``tritonclient.http``)."""
    inputs = []
    for name, value, datatype in tensors:
        tensor = module.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


def text(values: Sequence[object]) -> np.ndarray:
    """[1, n] BYTES, as Triton takes a list of ids: the ids themselves (each client's serialiser writes an element
    as the UTF-8 of its text), so the request's ids are not encoded twice."""
    array = np.empty(len(values), dtype=np.object_)
    array[:] = values
    return array.reshape(1, -1)


def history_tensors(history: History) -> list[Tensor]:
    tensors: list[Tensor] = [("HISTORY_PRODUCT_IDS", text(history.product_ids), "BYTES")]
    if history.event_types is not None:
        tensors.append(("HISTORY_EVENT_TYPES", text(history.event_types), "BYTES"))
    if history.timestamps is not None:
        tensors.append(("HISTORY_TIMESTAMPS", np.array(history.timestamps, np.int64).reshape(1, -1), "INT64"))
    if history.weights is not None:
        tensors.append(("HISTORY_WEIGHTS", np.array(history.weights, np.float32).reshape(1, -1), "FP32"))
    if history.request_time is not None:
        tensors.append(("REQUEST_TIME", np.array([[history.request_time]], np.int64), "INT64"))
    return tensors


def context_tensors(context: RequestContext | None) -> list[Tensor]:
    """The CONTEXT_* inputs (one value each) of the context's known fields; none without a context."""
    if context is None:
        return []
    tensors: list[Tensor] = []
    for name, value in (("CONTEXT_DEVICE", context.device), ("CONTEXT_REGION", context.region)):
        if value is not None:
            tensors.append((name, text([value]), "BYTES"))
    for name, value in (("CONTEXT_HOUR", context.hour), ("CONTEXT_WEEKDAY", context.weekday)):
        if value is not None:
            tensors.append((name, np.array([[value]], np.int32), "INT32"))
    return tensors


def top_k(k: int | None, serving: ServingConfig) -> list[Tensor]:
    value = serving.default_top_k if k is None else k
    return [("TOP_K", np.array([[value]], dtype=np.int32), "INT32")]


def flag(name: str, value: bool) -> list[Tensor]:
    """An optional TYPE_BOOL input, sent only when true (absent means false on the server)."""
    return [(name, np.array([[True]]), "BOOL")] if value else []


def candidate_tensors(candidates: Sequence[str] | None, candidate_set: str | None) -> list[Tensor]:
    tensors: list[Tensor] = []
    if candidates is not None:
        tensors.append(("CANDIDATE_PRODUCT_IDS", text(candidates), "BYTES"))
    if candidate_set is not None:
        tensors.append(("CANDIDATE_SET", text([candidate_set]), "BYTES"))
    return tensors


def recommend_tensors(history: History, k: int | None, serving: ServingConfig, *,
                      candidates: Sequence[str] | None = None, candidate_set: str | None = None,
                      exclude: Sequence[str] | None = None, exclude_purchased: bool = False,
                      exclude_seen: bool = False, context: RequestContext | None = None) -> list[Tensor]:
    """``recommend``: top-k for a history (moved by ``context``), optionally among candidates, minus exclusions."""
    tensors = (history_tensors(history) + context_tensors(context) + top_k(k, serving)
               + candidate_tensors(candidates, candidate_set))
    if exclude is not None:
        tensors.append(("EXCLUDE_PRODUCT_IDS", text(exclude), "BYTES"))
    return tensors + flag("EXCLUDE_PURCHASED", exclude_purchased) + flag("EXCLUDE_SEEN", exclude_seen)


def rerank_tensors(history: History, product_ids: Sequence[str], *,
                   context: RequestContext | None = None) -> list[Tensor]:
    """``rerank``: the given products ordered by relevance to the history (moved by ``context``)."""
    return (history_tensors(history) + context_tensors(context)
            + [("CANDIDATE_PRODUCT_IDS", text(product_ids), "BYTES")])


def similar_tensors(hero: str, history: History, k: int | None, serving: ServingConfig, *,
                    alpha: float | None = None, candidates: Sequence[str] | None = None,
                    candidate_set: str | None = None, exclude_seen: bool = False,
                    context: RequestContext | None = None) -> list[Tensor]:
    """``similar``: top-k for ``alpha * hero + (1 - alpha) * customer`` (the customer vector moved by
    ``context``); without a history (an anonymous visitor) the hero is sent as the one-product history,
    so the blend is the hero's own vector (moved by the context too)."""
    if not history.product_ids:
        history = History([hero])
    tensors = (history_tensors(history) + context_tensors(context) + top_k(k, serving)
               + [("HERO_PRODUCT_ID", text([hero]), "BYTES")])
    if alpha is not None:
        tensors.append(("ALPHA", np.array([[alpha]], dtype=np.float32), "FP32"))
    return tensors + candidate_tensors(candidates, candidate_set) + flag("EXCLUDE_SEEN", exclude_seen)


def canary_questions(products: Sequence[str], serving: ServingConfig) -> dict[str, list[Tensor]]:
    """One real question per touchpoint about served products, by model name: ``recommend`` (a one-product
    history, k=1), ``rerank`` (the first two products) and ``similar`` (the first as the hero, k=1). What the
    readiness checks of Triton's pods (:mod:`fashionrec.serving.canary`) and of the shop service ask."""
    history = History([products[0]])
    return {serving.model_name: recommend_tensors(history, 1, serving),
            serving.rerank_model_name: rerank_tensors(history, list(products[:2])),
            serving.similar_model_name: similar_tensors(products[0], history, 1, serving)}
