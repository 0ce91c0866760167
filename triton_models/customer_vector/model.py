"""Triton python model: a customer's history -> customer vector [D] (the first step of every ensemble).

Inputs per request (rows of a batch share nothing): HISTORY_PRODUCT_IDS (required) and, optionally,
HISTORY_EVENT_TYPES, HISTORY_TIMESTAMPS (epoch seconds), HISTORY_WEIGHTS (override the event type's
weight), REQUEST_TIME (epoch seconds the ages are measured from; default now) and the request's context,
one value per row: CONTEXT_DEVICE, CONTEXT_REGION (text), CONTEXT_HOUR (the customer's local hour 0-23)
and CONTEXT_WEEKDAY (Monday 0 .. Sunday 6; a negative hour or weekday is unknown). The pooling comes
from this version's ``aggregation.json`` (see ``fashionrec.contract.ops.history_weights``). A history may be far
longer than the pooling window the model was trained with (up to ``max_history_length``: the whole
seen-history, which `rank_products` excludes with EXCLUDE_SEEN); only the window's events are looked up
and pooled, the older ones weigh 0. Ids missing from the catalogue are ignored (histories outlive
catalogue versions); an empty or too long history, an unknown event type or mismatched lengths are
that request's error (checked over the whole history). The context moves the pooled vector by this
version's ``context.json`` tables (``fashionrec.contract.context``): an absent input, or a device or region
the model never saw, is unknown (adds nothing); an hour or weekday out of range is that request's error,
whether or not the version has context tables (a version without them ignores the values). Published
copies live in ``<repository>/customer_vector/<version>/`` beside the catalogue files and the contract package (``fashionrec/contract/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from fashionrec.contract import context, layout, ops, validation, wire

OPTIONAL = ("HISTORY_EVENT_TYPES", "HISTORY_TIMESTAMPS", "HISTORY_WEIGHTS", "REQUEST_TIME")
CONTEXT_INPUTS = {feature: f"CONTEXT_{feature.upper()}" for feature in context.FEATURES}  # all optional, [1] per row


class TritonPythonModel:
    """Weighted mean of the history's product embeddings, one response per request."""

    def initialize(self, args: dict) -> None:
        """Load this version's catalogue (embeddings, id -> row) and pooling settings."""
        wire.install(pb_utils)  # BYTES inputs decoded at numpy speed, not the stub's per-element loop
        self.refusals = validation.Refusals(pb_utils, args["model_name"], args["model_version"])
        folder = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        self.max_history_length = int(layout.config_parameter(config, "max_history_length"))
        self.embeddings, ids = layout.load_catalogue(folder)
        self.index = {pid: row for row, pid in enumerate(ids)}
        self.aggregation = layout.load_json(folder / layout.AGGREGATION_FILE)
        self.window = int(self.aggregation.get("window", 0))
        self.context = context.load(folder, self.embeddings.shape[1])  # CorruptVersion: Triton refuses the version
        used = () if self.context is None else self.context.features
        self.unused_clocks = [feature for feature in context.CLOCK_SIZES if feature not in used]

    def execute(self, requests: list) -> list:
        """Answer each request on its own: histories have different lengths (ragged batch)."""
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        """Customer vectors [b, D] for a request of b histories, or that request's error."""
        ids = pb_utils.get_input_tensor_by_name(request, "HISTORY_PRODUCT_IDS").as_numpy()
        try:
            extra = {name: _optional(request, name, ids.shape[0]) for name in OPTIONAL}
            vectors = np.stack([self._vector(row, ids[row], extra) for row in range(ids.shape[0])])
            vectors = self._in_context(request, vectors)
        except validation.RequestError as error:
            return self.refusals.response(error)
        return pb_utils.InferenceResponse([pb_utils.Tensor("CUSTOMER_VECTOR", vectors)])

    def _vector(self, row: int, ids: np.ndarray, extra: dict) -> np.ndarray:
        """One history's customer vector: the whole request is checked, only the pooling window is
        looked up and pooled (the same vector as a request of just those events)."""
        validation.check_history(ids.size, self.max_history_length)
        types, stamps, weights, now = (None if extra[name] is None else extra[name][row] for name in OPTIONAL)
        pooled = validation.request_weights(ids.size, self.aggregation, types, stamps, weights,
                                     None if now is None else float(now[0]))
        window = ops.pooling_window(ids.size, self.window)
        return ops.customer_vector(self.embeddings, ops.lookup_rows(self.index, ids[window]), pooled[window])

    def _in_context(self, request, vectors: np.ndarray) -> np.ndarray:
        """The request's customer vectors [b, D] moved by its context (as they are without context tables).
        Hours and weekdays are checked either way, so a client's bad clock fails on every version alike:
        by the tables' own lookup, or here for a clock the tables do not use."""
        values = {feature: _optional(request, name, len(vectors)) for feature, name in CONTEXT_INPUTS.items()}
        values = {feature: None if v is None else v.reshape(len(vectors)) for feature, v in values.items()}
        for feature in self.unused_clocks:
            if values[feature] is not None:
                context.clock_rows(feature, values[feature])
        return vectors if self.context is None else self.context.adjust(vectors, values)


def _optional(request, name: str, rows: int) -> np.ndarray | None:
    """An optional input as [rows, ...], or None when the request does not carry it."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    values = tensor.as_numpy()
    if values.shape[0] != rows:
        raise validation.RequestError(f"{name} has {values.shape[0]} rows but HISTORY_PRODUCT_IDS has {rows}")
    return values
