"""Triton python model ``embed_products``: new products' content fields -> their embeddings.

Inputs (one row per product, any batch): TITLE, CATEGORY, PRICE, and optionally DESCRIPTION, COLOUR,
BRAND (absent: ingest's defaults). Output EMBEDDING [D]: what the trained item tower gives a product
it has no id embedding for, computed by this version's content tower (``fashionrec/contract/content.py`` with
``content_tower.npz`` + ``content_features.json``, written by the export stage). A bad request (a
negative or NaN price, columns of different lengths) gets its own error; a version published
without a content tower loads, and refuses every request saying so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from fashionrec.contract import content, validation, wire

TEXT_INPUTS = {"TITLE": None, "DESCRIPTION": content.DEFAULT_DESCRIPTION, "CATEGORY": None,
               "COLOUR": content.DEFAULT_COLOUR, "BRAND": content.DEFAULT_BRAND}  # name -> default when absent


class TritonPythonModel:
    """One embedding per product row."""

    def initialize(self, args: dict) -> None:
        """Load this version's content tower, if it was exported with one."""
        wire.install(pb_utils)  # BYTES inputs decoded at numpy speed, not the stub's per-element loop
        self.refusals = validation.Refusals(pb_utils, args["model_name"], args["model_version"])
        folder = Path(__file__).resolve().parent
        self.tower = content.ContentTower.load(folder) if content.exists(folder) else None
        self.missing = (f"version {folder.name} of {args['model_name']} has no content tower (published from an "
                        f"export without {content.WEIGHTS_FILE}); re-export and publish to embed products")

    def execute(self, requests: list) -> list:
        return [self._respond(request) for request in requests]

    def _respond(self, request) -> pb_utils.InferenceResponse:
        try:
            if self.tower is None:
                raise content.ProductError(self.missing)
            prices = pb_utils.get_input_tensor_by_name(request, "PRICE").as_numpy().reshape(-1)
            columns = {name: _text(request, name, default, len(prices)) for name, default in TEXT_INPUTS.items()}
            embeddings = self.tower.embed_columns(columns["TITLE"], columns["DESCRIPTION"], columns["CATEGORY"],
                                                  columns["COLOUR"], columns["BRAND"], prices)
        except content.ProductError as error:
            return self.refusals.response(error)
        return pb_utils.InferenceResponse([pb_utils.Tensor("EMBEDDING", embeddings.astype(np.float32))])


def _text(request, name: str, default: str | None, rows: int) -> list[str]:
    """A text column as str (UTF-8; undecodable bytes become U+FFFD), or the default for every row."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return [default] * rows
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in tensor.as_numpy().reshape(-1)]
