"""The service's asynchronous gRPC client of Triton's touchpoints (``recommend``, ``rerank``, ``similar``).

Asynchronous so one service process keeps many page requests in flight while Triton ranks; the request
tensors are the ones every client sends (:mod:`fashionrec.serving.requests`). Failures come in two kinds,
because the page reacts differently: :class:`TritonRefused` (Triton answered INVALID_ARGUMENT: the request
was wrong, a bug of ours or an id the served version does not know) and :class:`TritonUnavailable` (down,
not loaded, failing or slower than ``online.triton_timeout_s``: the page falls back to the trending list).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import tritonclient.grpc.aio as aio
from tritonclient.utils import InferenceServerException

from fashionrec.config import OnlineConfig, ServingConfig
from fashionrec.repository.experiments import arm_ensemble
from fashionrec.serving import requests
from fashionrec.serving.connection import GRPC_CHANNEL_ARGS
from fashionrec.serving.requests import History, RequestContext

REFUSED_STATUS = "StatusCode.INVALID_ARGUMENT"


def _model(ensemble: str, version: int | None) -> str:
    """The ensemble to ask: the plain one (the served version) or an experiment arm's copy."""
    return ensemble if version is None else arm_ensemble(ensemble, version)


class TritonUnavailable(RuntimeError):
    """Triton did not answer in time, or failed: serve the fallback."""


class TritonRefused(ValueError):
    """Triton refused the request itself (INVALID_ARGUMENT); the message is Triton's."""


@dataclass(frozen=True)
class Ranked:
    """A touchpoint's answer: products best first with their scores, and the version that ranked them."""

    product_ids: tuple[str, ...]
    scores: tuple[float, ...]
    model_version: int | None
    seconds: float


class Touchpoints:
    """One gRPC channel to Triton, shared by every request of the service."""

    def __init__(self, online: OnlineConfig, serving: ServingConfig) -> None:
        self.url = online.triton_url
        self._timeout_s = online.triton_timeout_s
        self._serving = serving
        self._channel: aio.InferenceServerClient | None = None  # made in the serving event loop, on first use

    async def recommend(self, history: History, k: int, version: int | None = None, **options: object) -> Ranked:
        """``recommend`` (options as :func:`fashionrec.serving.requests.recommend_tensors` takes them); ``version``:
        an experiment arm's version, asked of its own ensemble (None: the served version)."""
        return await self.ask(_model(self._serving.model_name, version),
                              requests.recommend_tensors(history, k, self._serving, **options))

    async def rerank(self, history: History, product_ids: Sequence[str], version: int | None = None,
                     context: RequestContext | None = None) -> Ranked:
        return await self.ask(_model(self._serving.rerank_model_name, version),
                              requests.rerank_tensors(history, product_ids, context=context))

    async def similar(self, hero: str, history: History, k: int, version: int | None = None,
                      **options: object) -> Ranked:
        return await self.ask(_model(self._serving.similar_model_name, version),
                              requests.similar_tensors(hero, history, k, self._serving, **options))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    @property
    def _client(self) -> aio.InferenceServerClient:
        """The channel, bound to the running event loop (gRPC's asyncio channels cannot change loops)."""
        if self._channel is None:
            self._channel = aio.InferenceServerClient(self.url, channel_args=GRPC_CHANNEL_ARGS)
        return self._channel

    async def ask(self, model: str, tensors: list[requests.Tensor]) -> Ranked:
        """One ranking touchpoint's answer to ``tensors`` (as :mod:`fashionrec.serving.requests` builds them)."""
        started = time.perf_counter()
        try:
            result = await self._client.infer(
                model, requests.infer_inputs(aio, tensors),
                outputs=[aio.InferRequestedOutput(name) for name in requests.RANKED_OUTPUTS],
                client_timeout=self._timeout_s)
        except InferenceServerException as error:
            if str(error.status()) == REFUSED_STATUS:
                raise TritonRefused(f"{model}: {error.message()}") from error
            raise TritonUnavailable(f"{model} at {self.url}: {error.message() or error.status()}") from error
        ids = result.as_numpy("PRODUCT_IDS").reshape(-1)
        scores = result.as_numpy("SCORES").reshape(-1)
        version = result.get_response().model_version
        return Ranked(tuple(pid.decode("utf-8") for pid in ids), tuple(float(s) for s in scores),
                      int(version) if version else None, time.perf_counter() - started)
