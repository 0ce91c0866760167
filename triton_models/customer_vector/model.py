"""Triton python model: a customer's history -> customer vector [D] (the first step of `similar`).

The inputs, their checks and the pooling are :mod:`fashionrec.contract.pooling`'s: this version's
``aggregation.json`` (see ``fashionrec.contract.ops.history_weights``) and, when the export has them,
its ``context.json`` tables. ``rank_products`` pools the same way for `recommend` and `rerank`. A bad
request gets its own error; the others in the batch are answered. Published copies live in
``<repository>/customer_vector/<version>/`` beside the catalogue files and the contract package
(``fashionrec/contract/``).
"""

from __future__ import annotations

import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from fashionrec.contract import layout, pooling, validation, wire


class TritonPythonModel:
    """Weighted mean of the history's product embeddings, one response per request."""

    def initialize(self, args: dict) -> None:
        """Load this version's catalogue (embeddings, id -> row), pooling settings and context tables."""
        wire.install(pb_utils)  # BYTES inputs decoded at numpy speed, not the stub's per-element loop
        self.refusals = validation.Refusals(pb_utils, args["model_name"], args["model_version"])
        folder = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        embeddings, ids = layout.load_catalogue(folder)
        index = {pid: row for row, pid in enumerate(ids)}
        max_history_length = int(layout.config_parameter(config, "max_history_length"))
        self.pooling = pooling.HistoryPooling.load(folder, embeddings, index, max_history_length)

    def execute(self, requests: list) -> list:
        """Answer each request on its own: histories have different lengths (ragged batch)."""
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        """Customer vectors [b, D] for a request of b histories, or that request's error."""
        try:
            vectors = self.pooling.vectors(lambda name: _input(request, name))
        except validation.RequestError as error:
            return self.refusals.response(error)
        return pb_utils.InferenceResponse([pb_utils.Tensor("CUSTOMER_VECTOR", vectors)])


def _input(request, name: str):
    """An input as numpy, or None when the (optional) input is absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()
