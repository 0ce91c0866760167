"""Triton python model: a customer's history (product ids + weights) -> customer vector [D].

Published copies live in ``<repository>/customer_vector/<version>/`` beside the catalogue files and
``fashionrec_ops.py`` (a copy of fashionrec/serving/ops.py): the stub interpreter only sees this model's
folders, so each version is self-contained. Ids missing from the catalogue are ignored, never an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import fashionrec_ops as ops
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Weighted mean of the history's product embeddings, one response per request."""

    def initialize(self, args: dict) -> None:
        """Load this version's catalogue: embeddings and the id -> row index."""
        folder = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        self.max_history_length = int(ops.config_parameter(config, "max_history_length"))
        self.embeddings, ids = ops.load_catalogue(folder)
        self.index = {pid: row for row, pid in enumerate(ids)}

    def execute(self, requests: list) -> list:
        """Answer each request on its own: histories have different lengths (ragged batch)."""
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        """Customer vectors [b, D] for a request of b histories, or a per-request error."""
        ids = pb_utils.get_input_tensor_by_name(request, "HISTORY_PRODUCT_IDS").as_numpy()
        weights = pb_utils.get_input_tensor_by_name(request, "HISTORY_WEIGHTS").as_numpy()
        error = self._history_error(ids, weights)
        if error:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
        vectors = np.stack([
            ops.customer_vector(self.embeddings, ops.lookup_rows(self.index, row_ids), row_weights)
            for row_ids, row_weights in zip(ids, weights, strict=True)
        ])
        return pb_utils.InferenceResponse([pb_utils.Tensor("CUSTOMER_VECTOR", vectors)])

    def _history_error(self, ids: np.ndarray, weights: np.ndarray) -> str | None:
        """Why the request's histories cannot be served (checked row by row), or None."""
        if ids.shape[0] != weights.shape[0]:
            return f"{ids.shape[0]} rows of HISTORY_PRODUCT_IDS but {weights.shape[0]} of HISTORY_WEIGHTS"
        for row_ids, row_weights in zip(ids, weights, strict=True):
            error = ops.history_error(row_ids.size, row_weights, self.max_history_length)
            if error:
                return error
        return None
