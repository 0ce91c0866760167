"""Triton python model: customer vector [D] + TOP_K -> top-k product ids and scores.

All valid requests of one execute() call are ranked with ONE matrix product against the catalogue
(dynamic batching groups them), then each request keeps its own k. Scores are sigmoid(p_u . q_i).
Published copies live in ``<repository>/rank_products/<version>/`` with their catalogue files and
``fashionrec_ops.py`` (a copy of fashionrec/serving/ops.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import fashionrec_ops as ops
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Exact top-k by dot product over the whole catalogue."""

    def initialize(self, args: dict) -> None:
        """Load this version's catalogue: embeddings [N, D] and the product ids as bytes."""
        folder = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        self.max_top_k = int(ops.config_parameter(config, "max_top_k"))
        self.embeddings, ids = ops.load_catalogue(folder)
        self.product_ids = np.array(ids, dtype=np.object_)

    def execute(self, requests: list) -> list:
        """Validate each request, rank the valid ones together, answer in request order."""
        responses: list = [None] * len(requests)
        vectors, ks, valid = [], [], []
        for position, request in enumerate(requests):
            vector, k, error = self._parse(request)
            if error:
                responses[position] = pb_utils.InferenceResponse(error=pb_utils.TritonError(error))
            else:
                vectors.append(vector)
                ks.append(k)
                valid.append(position)
        if valid:
            rows, scores = ops.rank_candidates(np.concatenate(vectors), self.embeddings, max(ks))
            starts = np.cumsum([0] + [len(v) for v in vectors])
            for position, k, start, stop in zip(valid, ks, starts[:-1], starts[1:], strict=True):
                responses[position] = self._response(rows[start:stop, :k], scores[start:stop, :k])
        return responses

    def _parse(self, request) -> tuple:
        """(customer vectors [b, D], k, None) or (None, None, error message)."""
        vector = pb_utils.get_input_tensor_by_name(request, "CUSTOMER_VECTOR").as_numpy()
        top_k = pb_utils.get_input_tensor_by_name(request, "TOP_K").as_numpy().reshape(-1)
        if np.unique(top_k).size != 1:
            return None, None, f"TOP_K must be the same for every row of a request, got {top_k.tolist()}"
        error = ops.top_k_error(int(top_k[0]), self.max_top_k)
        if error is None and not np.all(np.isfinite(vector)):
            error = "CUSTOMER_VECTOR must be finite"
        return (None, None, error) if error else (vector, int(top_k[0]), None)

    def _response(self, rows: np.ndarray, scores: np.ndarray) -> pb_utils.InferenceResponse:
        """PRODUCT_IDS [b, k] (bytes) and SCORES [b, k] float32."""
        return pb_utils.InferenceResponse([
            pb_utils.Tensor("PRODUCT_IDS", self.product_ids[rows]),
            pb_utils.Tensor("SCORES", scores.astype(np.float32)),
        ])
