"""Ask the served ``recommend`` ensemble for a customer's recommendations, over gRPC or HTTP.

The client sends what it is given and lets the server validate (k range, history length, weights):
the limits live in the published model configuration, so one place decides what is a bad request.
Server-side rejections and transport failures both surface as :class:`RecommendError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import numpy as np
from tritonclient.utils import InferenceServerException

from fashionrec.config import ServingConfig

Protocol = Literal["grpc", "http"]
_DEFAULTS = ServingConfig()


class RecommendError(RuntimeError):
    """The server refused or failed a request (the message is the server's), or was unreachable."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended product; ``score`` is sigmoid(customer vector . product embedding)."""

    product_id: str
    score: float


def _tritonclient(protocol: Protocol) -> Any:
    """The tritonclient module for a protocol (imported lazily: each pulls in its own stack)."""
    if protocol == "grpc":
        import tritonclient.grpc as module
    elif protocol == "http":
        import tritonclient.http as module
    else:
        raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
    return module


class RecommendClient:
    """A connection to Triton's ``recommend`` ensemble; ``url`` is ``host:port`` (a scheme is dropped)."""

    def __init__(
        self,
        url: str,
        protocol: Protocol = "grpc",
        model_name: str = _DEFAULTS.model_name,
        timeout_s: float = _DEFAULTS.client_timeout_s,
    ) -> None:
        self.url = url.split("://", 1)[-1]
        self.protocol = protocol
        self.model_name = model_name
        self.timeout_s = timeout_s
        self._module = _tritonclient(protocol)
        if protocol == "http":
            self._client = self._module.InferenceServerClient(
                self.url, connection_timeout=timeout_s, network_timeout=timeout_s)
        else:
            self._client = self._module.InferenceServerClient(self.url)

    def __enter__(self) -> RecommendClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection."""
        self._client.close()

    def is_ready(self) -> bool:
        """True when the server is up and the recommend model is loaded and ready."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model_name))
        except (InferenceServerException, OSError):
            return False

    def recommend(
        self,
        history_product_ids: Sequence[str],
        history_weights: Sequence[float] | None = None,
        k: int = _DEFAULTS.default_top_k,
    ) -> list[Recommendation]:
        """Top-k products for a history (weights default to 1 each), best first.

        Unknown product ids are ignored by the server; an empty or all-unknown history scores every
        product 0.5 and returns the first k catalogue rows. Raises RecommendError on a refused request.
        """
        weights = [1.0] * len(history_product_ids) if history_weights is None else list(history_weights)
        inputs = [
            self._input("HISTORY_PRODUCT_IDS", np.array([[str(p).encode("utf-8") for p in history_product_ids]],
                                                         dtype=np.object_).reshape(1, -1), "BYTES"),
            self._input("HISTORY_WEIGHTS", np.array(weights, dtype=np.float32).reshape(1, -1), "FP32"),
            self._input("TOP_K", np.array([[k]], dtype=np.int32), "INT32"),
        ]
        result = self._infer(inputs)
        ids = result.as_numpy("PRODUCT_IDS").reshape(-1)
        scores = result.as_numpy("SCORES").reshape(-1)
        return [Recommendation(pid.decode("utf-8"), float(score)) for pid, score in zip(ids, scores, strict=True)]

    def _input(self, name: str, data: np.ndarray, datatype: str) -> Any:
        tensor = self._module.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        return tensor

    def _infer(self, inputs: list[Any]) -> Any:
        """One inference; server errors and connection failures become RecommendError."""
        outputs = [self._module.InferRequestedOutput(name) for name in ("PRODUCT_IDS", "SCORES")]
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        try:
            return self._client.infer(self.model_name, inputs, outputs=outputs, **timeout)
        except InferenceServerException as error:
            raise RecommendError(f"{self.model_name} at {self.url} ({self.protocol}): {error.message()}") from error
        except OSError as error:
            raise RecommendError(f"cannot reach Triton at {self.url} ({self.protocol}): {error}") from error
