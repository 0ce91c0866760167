"""The service's asynchronous gRPC client of Triton's touchpoints (``recommend``, ``rerank``, ``similar``).

Asynchronous so one service process keeps many page requests in flight while Triton ranks; the request
tensors are the ones every client sends (:mod:`fashionrec.serving.requests`). Failures come in two kinds,
because the page reacts differently: :class:`TritonRefused` (Triton answered INVALID_ARGUMENT: the request
was wrong, a bug of ours or an id the served version does not know) and :class:`TritonUnavailable` (down,
not loaded, failing or slower than ``online.triton_timeout_s``: the page falls back to the trending list).

It speaks Triton's gRPC protocol (KServe v2's ``ModelInfer``) through the stub tritonclient ships, not through
tritonclient's asyncio client: every page sends the customer's whole history, and the client's per-element
BYTES serialisation and request building cost about 0.2 ms of the service's CPU per call (0.67 against
0.46 ms a ``recommend`` of 200 events, measured here), CPU the service shares with Triton on a busy node.

Requests in flight together go to Triton together (natural batching): a ``recommend`` or ``similar`` call
joins the lane of the requests it can share a batch with (:mod:`fashionrec.serving.batching`). While
``online.triton_batch_calls`` calls of that lane are in flight, it waits, and the next call takes up to
``online.triton_batch_rows`` waiting requests as the rows of one request. A lone request goes at once, so
at low load nothing waits; under load Triton crosses its ensemble and python steps once per batch
instead of once per request. Each row's answer is the one it gets alone; a batch Triton refuses, or one
cut short of k, is asked again row by row, so each request gets its own answer or its own error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import struct
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import deserialize_bytes_tensor

from fashionrec.config import OnlineConfig, ServingConfig
from fashionrec.repository.experiments import arm_ensemble
from fashionrec.serving import batching, requests
from fashionrec.serving.connection import GRPC_CHANNEL_ARGS
from fashionrec.serving.requests import History, RequestContext

BYTES_LENGTH = struct.Struct("<I")  # a BYTES element goes as its length (4 bytes, little-endian), then its bytes
WIRE_CACHE_ELEMENTS = 200_000  # ids whose wire form the client keeps (about 25 MB at most)


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

    def __init__(self, online: OnlineConfig, serving: ServingConfig,
                 observe_batch: Callable[[int], None] | None = None) -> None:
        """``observe_batch``: told the rows of every call sent (a metric)."""
        self.url = online.triton_url
        self._timeout_s = online.triton_timeout_s
        self._serving = serving
        self._channel: grpc.aio.Channel | None = None  # made in the serving event loop, on first use
        self._stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None
        self._wire = WireFormat()
        self._batch_rows, self._batch_calls = online.triton_batch_rows, online.triton_batch_calls
        self._observe_batch = observe_batch or (lambda rows: None)
        self._lanes: dict[Hashable, _Lane] = {}
        self._sending: set[asyncio.Task] = set()  # the batches' tasks, referenced until they end

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

    def _client(self) -> service_pb2_grpc.GRPCInferenceServiceStub:
        """The stub over the channel, bound to the running event loop (gRPC's asyncio channels cannot change
        loops)."""
        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.url, options=GRPC_CHANNEL_ARGS)
            self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        return self._stub

    async def ask(self, model: str, tensors: list[requests.Tensor]) -> Ranked:
        """One ranking touchpoint's answer to ``tensors`` (as :mod:`fashionrec.serving.requests` builds them),
        sent alone or as a row of a batch; ``seconds`` counts from the call, waiting included."""
        started = time.perf_counter()
        key = (batching.batch_key(model, tensors, self._serving.response_cache_mb > 0)
               if self._batch_rows > 1 else None)
        if key is None:
            (ranked,) = await self._infer(model, tensors)
        else:
            lane = self._lanes.setdefault(key, _Lane(model))
            answer: asyncio.Future[Ranked] = asyncio.get_running_loop().create_future()
            lane.waiting.append((tensors, answer))
            if lane.in_flight < self._batch_calls:
                self._send(lane)
            ranked = await answer
        return dataclasses.replace(ranked, seconds=time.perf_counter() - started)

    def _send(self, lane: _Lane) -> None:
        """Send the lane's first ``triton_batch_rows`` waiting requests as one call, in a task of its own."""
        batch, lane.waiting = lane.waiting[:self._batch_rows], lane.waiting[self._batch_rows:]
        lane.in_flight += 1
        task = asyncio.get_running_loop().create_task(self._answer(lane, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _answer(self, lane: _Lane, batch: list[_Waiting]) -> None:
        """Answer each request of ``batch`` whose caller still waits; then send what waited meanwhile. Whatever
        goes wrong reaches every caller of the batch (none is left waiting): an unexpected error as itself,
        the task's cancellation (the service stopping) as theirs."""
        waiting = [(tensors, answer) for tensors, answer in batch if not answer.done()]  # done: cancelled
        try:
            outcomes: list[Ranked | BaseException] = await self._outcomes(
                lane.model, [tensors for tensors, _ in waiting])
        except asyncio.CancelledError:
            for _, answer in waiting:
                answer.cancel()
            raise
        except Exception as error:  # a bug of ours or an answer Triton should not give: the callers' error
            outcomes = [error] * len(waiting)
        finally:
            lane.in_flight -= 1
            if lane.waiting:
                self._send(lane)
        for (_, answer), outcome in zip(waiting, outcomes, strict=True):
            if answer.done():
                continue
            if isinstance(outcome, BaseException):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)

    async def _outcomes(self, model: str, batch: list[list[requests.Tensor]]) -> list[Ranked | Exception]:
        """Each request's answer or error: one call for all, or one each when Triton refuses the batch or cuts
        it short of k (a row it would answer alone, or with fewer products, is not told another row's fate)."""
        if len(batch) > 1:
            try:
                rows = await self._infer(model, batching.stack(batch))
            except TritonRefused:
                rows = None
            except TritonUnavailable as error:
                return [error] * len(batch)
            if rows is not None and len(rows[0].product_ids) == _top_k(batch[0]):
                return list(rows)
        return list(await asyncio.gather(*(self._alone(model, tensors) for tensors in batch)))

    async def _alone(self, model: str, tensors: list[requests.Tensor]) -> Ranked | Exception:
        try:
            (ranked,) = await self._infer(model, tensors)
        except (TritonRefused, TritonUnavailable) as error:
            return error
        return ranked

    async def _infer(self, model: str, tensors: list[requests.Tensor]) -> list[Ranked]:
        """One ``ModelInfer`` call: one answer per row of the request."""
        started = time.perf_counter()
        rows = int(tensors[0][1].shape[0])
        self._observe_batch(rows)
        try:
            response = await self._client().ModelInfer(self._wire.request(model, tensors), timeout=self._timeout_s)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise TritonRefused(f"{model}: {error.details()}") from error
            raise TritonUnavailable(f"{model} at {self.url}: {error.details() or error.code()}") from error
        outputs = {tensor.name: raw for tensor, raw in zip(response.outputs, response.raw_output_contents,
                                                            strict=True)}
        ids = [pid.decode("utf-8") for pid in deserialize_bytes_tensor(outputs["PRODUCT_IDS"])]
        scores = np.frombuffer(outputs["SCORES"], np.float32).tolist()
        width = len(ids) // rows
        version = int(response.model_version) if response.model_version else None
        seconds = time.perf_counter() - started
        return [Ranked(tuple(ids[r * width:(r + 1) * width]), tuple(scores[r * width:(r + 1) * width]), version,
                       seconds) for r in range(rows)]


_Waiting = tuple[list[requests.Tensor], "asyncio.Future[Ranked]"]


@dataclass
class _Lane:
    """The requests that can share a batch: those waiting, and how many calls of theirs are in flight."""

    model: str
    waiting: list[_Waiting] = field(default_factory=list)
    in_flight: int = 0


def _top_k(tensors: Sequence[requests.Tensor]) -> int:
    return next(int(value.reshape(-1)[0]) for name, value, _ in tensors if name == "TOP_K")


class WireFormat:
    """Tensors as Triton reads them raw: BYTES elements each after its 4-byte length, anything else its
    little-endian values in row-major order.

    A page sends the same ids again and again (the customer's history once per carousel, a category's
    candidates on every homepage), so each BYTES element's wire form is kept, up to ``capacity`` elements
    (then all are dropped and kept afresh: a bound on memory, not a cache that must be right about recency).
    """

    def __init__(self, capacity: int = WIRE_CACHE_ELEMENTS) -> None:
        self.capacity = capacity
        self._known: dict[object, bytes] = {}

    def request(self, model: str, tensors: Sequence[requests.Tensor]) -> service_pb2.ModelInferRequest:
        """The ``ModelInfer`` request of ``tensors`` (contents in ``raw_input_contents``, in input order), asking
        for the ranked outputs."""
        request = service_pb2.ModelInferRequest(model_name=model)
        for name, value, datatype in tensors:
            tensor = request.inputs.add(name=name, datatype=datatype)
            tensor.shape.extend(value.shape)
            request.raw_input_contents.append(self.contents(value, datatype))
        for name in requests.RANKED_OUTPUTS:
            request.outputs.add(name=name)
        return request

    def contents(self, value: np.ndarray, datatype: str) -> bytes:
        """One tensor's raw contents."""
        if datatype != "BYTES":
            return np.ascontiguousarray(value, value.dtype.newbyteorder("<")).tobytes()
        parts = []
        for item in value.reshape(-1).tolist():
            wire = self._known.get(item)
            if wire is None:
                wire = self._learn(item)
            parts.append(wire)
        return b"".join(parts)

    def _learn(self, item: object) -> bytes:
        encoded = item if isinstance(item, bytes) else str(item).encode("utf-8")
        if len(self._known) >= self.capacity:
            self._known.clear()
        wire = self._known[item] = BYTES_LENGTH.pack(len(encoded)) + encoded
        return wire
