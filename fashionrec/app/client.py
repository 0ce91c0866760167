"""Typed client for every served touchpoint (`recommend`, `rerank`, `similar`, `embed_products`), gRPC or HTTP.

The client sends what it is given and lets the server validate (k range, history length, ids, event
types): the limits live in the published model configuration, so one place decides what is a bad
request. Server-side refusals and transport failures both surface as :class:`RecommendError`, with
the server's message. ``FashionrecClient`` is the API; ``RecommendClient`` keeps the original
one-call interface (history ids + weights -> recommend) for existing callers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
from tritonclient.utils import InferenceServerException

from fashionrec.config import ServingConfig
from fashionrec.contract.content import ProductContent
from fashionrec.serving import requests
from fashionrec.serving.connection import Protocol, raw_client, server_address, tritonclient_module
from fashionrec.serving.requests import History, RequestContext, as_history

_DEFAULTS = ServingConfig()


class RecommendError(RuntimeError):
    """The server refused or failed a request (the message is the server's), or was unreachable."""


class RequestRejected(RecommendError):
    """The server refused the request itself (HTTP 400, gRPC INVALID_ARGUMENT): fix it, do not retry."""


CLIENT_ERROR_STATUSES = ("400", "StatusCode.INVALID_ARGUMENT")  # tritonclient's status() of a refused request
# ... of a server that is not there yet: down, or up but still loading its models (a model without a loaded
# version is "not found" then; a misspelt model name is too, and fails after the retries)
TRANSIENT_STATUSES = ("StatusCode.UNAVAILABLE", "503", "StatusCode.NOT_FOUND", "404")


@dataclass(frozen=True)
class Recommendation:
    """One ranked product; ``score`` is sigmoid(query vector . product embedding)."""

    product_id: str
    score: float


class FashionrecClient:
    """One connection to Triton's served touchpoints; ``url`` is ``host:port`` (an http:// scheme is dropped)
    or, over gRPC, any gRPC target (``dns:///host:port``: every address it resolves to, round robin).

    Model names and default k come from ``serving`` (ServingConfig); ``timeout_s`` defaults to its
    ``client_timeout_s``. Thread-safe as the underlying tritonclient is (one client per thread is
    safest for HTTP).
    """

    def __init__(self, url: str, protocol: Protocol = "grpc", serving: ServingConfig = _DEFAULTS,
                 timeout_s: float | None = None) -> None:
        self.url = server_address(url)
        self.protocol = protocol
        self.serving = serving
        self.timeout_s = serving.client_timeout_s if timeout_s is None else timeout_s
        self._module = tritonclient_module(protocol)
        self._client = raw_client(self._module, self.url, protocol, self.timeout_s)

    def __enter__(self) -> FashionrecClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection."""
        self._client.close()

    def is_ready(self, model: str | None = None) -> bool:
        """True when the server is up and ``model`` (default: recommend) is loaded and ready."""
        try:
            return bool(self._client.is_server_ready()
                        and self._client.is_model_ready(model or self.serving.model_name))
        except (InferenceServerException, OSError):
            return False

    def served_version(self, model: str | None = None) -> int:
        """The version of ``model`` (default: recommend) the server answers with now."""
        metadata = self._client.get_model_metadata(model or self.serving.model_name)
        versions = metadata.versions if self.protocol == "grpc" else metadata["versions"]
        return max(int(v) for v in versions)

    # -- touchpoints --------------------------------------------------------------------------------
    def recommend(self, history: History | Sequence[str], k: int | None = None, *,
                  candidates: Sequence[str] | None = None, candidate_set: str | None = None,
                  exclude: Sequence[str] | None = None, exclude_purchased: bool = False,
                  exclude_seen: bool = False, context: RequestContext | None = None) -> list[Recommendation]:
        """Top-k products for a history, best first, optionally only among ``candidates`` (ids) or a
        published ``candidate_set`` (e.g. "sale", "new_in"), never ``exclude``d ids nor, with
        ``exclude_purchased``, the history's purchases (needs ``event_types``) nor, with
        ``exclude_seen``, any product of the history. For ``exclude_seen`` send the customer's whole
        seen-history (up to ``max_history_length`` events): only its last events are pooled. ``context``
        (device, region, local hour and weekday) moves the customer vector of a context model."""
        tensors = requests.recommend_tensors(
            as_history(history), k, self.serving, candidates=candidates, candidate_set=candidate_set, exclude=exclude,
            exclude_purchased=exclude_purchased, exclude_seen=exclude_seen, context=context)
        return self._ranked(self.serving.model_name, tensors)

    def rerank(self, history: History | Sequence[str], product_ids: Sequence[str], *,
               context: RequestContext | None = None) -> list[Recommendation]:
        """``product_ids`` (a category page, search results) ordered by relevance to the history (in
        ``context``), with scores; ties keep the given order. Unknown or duplicate ids are refused."""
        return self._ranked(self.serving.rerank_model_name,
                            requests.rerank_tensors(as_history(history), product_ids, context=context))

    def similar(self, hero: str, history: History | Sequence[str] = (), k: int | None = None, *,
                alpha: float | None = None, candidates: Sequence[str] | None = None,
                candidate_set: str | None = None, exclude_seen: bool = False,
                context: RequestContext | None = None) -> list[Recommendation]:
        """Top-k products for ``alpha * hero + (1 - alpha) * customer`` (alpha default: published), never
        the hero itself nor, with ``exclude_seen``, any product of the history. Without a history (an
        anonymous visitor) the hero alone is the query: the hero is sent as the one-product history,
        so the blend is the hero's own vector."""
        tensors = requests.similar_tensors(hero, as_history(history), k, self.serving, alpha=alpha,
                                           candidates=candidates, candidate_set=candidate_set,
                                           exclude_seen=exclude_seen, context=context)
        return self._ranked(self.serving.similar_model_name, tensors)

    def embed_products(self, products: Sequence[ProductContent]) -> np.ndarray:
        """float32 [len(products), D]: the served content tower's embedding of each product (what the
        model gives a product it never saw in training); one request for all of them. A negative or
        NaN price is refused."""
        columns = {"TITLE": [p.title for p in products], "DESCRIPTION": [p.description for p in products],
                   "CATEGORY": [p.category for p in products], "COLOUR": [p.colour for p in products],
                   "BRAND": [p.brand for p in products]}
        tensors = [(name, requests.text(values).reshape(-1, 1), "BYTES") for name, values in columns.items()]
        tensors.append(("PRICE", np.array([p.price for p in products], dtype=np.float32).reshape(-1, 1), "FP32"))
        result = self.infer(self.serving.embed_model_name, requests.infer_inputs(self._module, tensors),
                            ["EMBEDDING"])
        return result.as_numpy("EMBEDDING").astype(np.float32)

    # -- plumbing -----------------------------------------------------------------------------------
    def _ranked(self, model: str, tensors: list[requests.Tensor]) -> list[Recommendation]:
        result = self.infer(model, requests.infer_inputs(self._module, tensors), requests.RANKED_OUTPUTS)
        ids = result.as_numpy("PRODUCT_IDS").reshape(-1)
        scores = result.as_numpy("SCORES").reshape(-1)
        return [Recommendation(pid.decode("utf-8"), float(score)) for pid, score in zip(ids, scores, strict=True)]

    def infer(self, model: str, inputs: list[Any], outputs: Sequence[str]) -> Any:
        """One raw inference; server errors and connection failures become RecommendError. A server that
        is unreachable or unavailable (restarting, say) is asked again ``serving.client_retries`` times,
        after ``client_retry_backoff_s`` doubling up to ``client_max_backoff_s``; a refused request
        (RequestRejected) never."""
        requested = [self._module.InferRequestedOutput(name) for name in outputs]
        timeout = {"client_timeout": self.timeout_s} if self.protocol == "grpc" else {}
        for attempt in range(self.serving.client_retries + 1):
            try:
                return self._client.infer(model, inputs, outputs=requested, **timeout)
            except InferenceServerException as error:
                status = str(error.status())
                if status not in TRANSIENT_STATUSES or attempt == self.serving.client_retries:
                    kind = RequestRejected if status in CLIENT_ERROR_STATUSES else RecommendError
                    raise kind(f"{model} at {self.url} ({self.protocol}): {error.message()}") from error
            except OSError as error:
                if attempt == self.serving.client_retries:
                    raise RecommendError(f"cannot reach Triton at {self.url} ({self.protocol}): {error}") from error
            time.sleep(min(self.serving.client_retry_backoff_s * 2 ** attempt, self.serving.client_max_backoff_s))
        raise AssertionError("unreachable: the last attempt returns or raises")


class RecommendClient(FashionrecClient):
    """The original interface: ``recommend(history ids, weights, k)`` on the ``model_name`` ensemble."""

    def __init__(self, url: str, protocol: Protocol = "grpc", model_name: str = _DEFAULTS.model_name,
                 timeout_s: float = _DEFAULTS.client_timeout_s) -> None:
        super().__init__(url, protocol, dataclasses.replace(_DEFAULTS, model_name=model_name), timeout_s)
        self.model_name = model_name

    def recommend(self, history_product_ids: Sequence[str],  # type: ignore[override]
                  history_weights: Sequence[float] | None = None,
                  k: int = _DEFAULTS.default_top_k) -> list[Recommendation]:
        """Top-k products for a history (weights default to the event weight 1 each), best first."""
        history = History(list(history_product_ids), weights=None if history_weights is None else list(history_weights))
        return super().recommend(history, k)
