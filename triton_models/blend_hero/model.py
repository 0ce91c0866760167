"""Triton python model (`similar`'s middle step): customer vector + hero product -> blended vector.

``BLENDED_VECTOR = ALPHA * hero + (1 - ALPHA) * CUSTOMER_VECTOR``; ALPHA is optional (default: the
published ``default_alpha``). An unknown hero or an ALPHA outside [0, 1] is that request's error. The
`similar` ensemble also routes HERO_PRODUCT_ID to rank_products' EXCLUDE_PRODUCT_IDS, so the hero is
never recommended to itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from fashionrec.contract import layout, ops, validation, wire


class TritonPythonModel:
    """One blended vector per request row."""

    def initialize(self, args: dict) -> None:
        """Load this version's catalogue and the default alpha."""
        wire.install(pb_utils)  # BYTES inputs decoded at numpy speed, not the stub's per-element loop
        self.refusals = validation.Refusals(pb_utils, args["model_name"], args["model_version"])
        folder = Path(__file__).resolve().parent
        config = json.loads(args["model_config"])
        self.default_alpha = float(layout.config_parameter(config, "default_alpha"))
        self.embeddings, ids = layout.load_catalogue(folder)
        self.index = {pid: row for row, pid in enumerate(ids)}

    def execute(self, requests: list) -> list:
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        customer = pb_utils.get_input_tensor_by_name(request, "CUSTOMER_VECTOR").as_numpy()
        hero = pb_utils.get_input_tensor_by_name(request, "HERO_PRODUCT_ID").as_numpy().reshape(-1)
        alpha_input = pb_utils.get_input_tensor_by_name(request, "ALPHA")
        alphas = (np.full(len(customer), self.default_alpha) if alpha_input is None
                  else alpha_input.as_numpy().reshape(-1).astype(np.float64))
        try:
            if hero.size != len(customer) or alphas.size != len(customer):
                raise validation.RequestError("HERO_PRODUCT_ID and ALPHA need one value per history")
            validation.check_alphas(alphas)
            heroes = self.embeddings[validation.known_rows(self.index, list(hero), "HERO_PRODUCT_ID")]
            blended = np.stack([ops.blend(h, c, a) for h, c, a in zip(heroes, customer, alphas, strict=True)])
        except validation.RequestError as error:
            return self.refusals.response(error)
        return pb_utils.InferenceResponse([pb_utils.Tensor("BLENDED_VECTOR", blended)])
