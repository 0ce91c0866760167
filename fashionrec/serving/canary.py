"""Readiness that means "every touchpoint can answer": a canary beside Triton, for Kubernetes' readiness probe.

Triton's own ``/v2/health/ready`` does not say that. With ``--strict-readiness=true`` it stays false after
any model failed to load, even while every ensemble answers, and it is true while an ensemble is unloaded.
So the canary asks each touchpoint one real question over gRPC, with the request tensors every client
sends (:mod:`fashionrec.serving.requests`): ``recommend`` (a one-product history, k=1), ``rerank`` (that
product and a second one) and ``similar`` (that product as the hero, k=1). ``GET /ready`` answers 200 when
all three answered, else 503 with each failure's short reason; ``GET /live`` answers 200 while the process
runs. Results are cached for ``serving.canary_cache_s``, so probes do not load Triton.

Which products: ones the version Triton is serving knows. The canary asks Triton which version each
touchpoint serves (the ensemble's ready version, from its model metadata: each ensemble serves exactly
one, :mod:`fashionrec.repository.versions`), then reads the first product ids of that version's ranking
model from the model repository Triton serves (local or gs://; ``<repo>/rank_products/<v>/product_ids.txt``),
once per version. So a switch to a new version (a publish or a rollback, picked up by a polling Triton
seconds to minutes after the manifest names it) never makes the canary ask with ids the running version
does not know, and the bucket is read only when the served version changes.

A Triton that is down or restarting, an unloaded touchpoint, a version Triton refused to load (the
ensemble then has no ready version) or a refused question: each is a failed check, so 503 within one
cache period (every call is bounded by ``serving.canary_timeout_s``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from fashionrec import storage
from fashionrec.config import ServingConfig
from fashionrec.contract.layout import PRODUCT_IDS_FILE
from fashionrec.messages import one_line
from fashionrec.serving import requests
from fashionrec.serving.connection import raw_client, server_address, tritonclient_module

OK = "ok"
READY_PATH = "/ready"
LIVE_PATH = "/live"
CANARY_PRODUCTS = 2  # the first product ids of the served version: `rerank` orders two
VERSIONS_KEPT = 4  # product ids cached for this many versions (the served one, the previous during a switch)
MAX_REASON_CHARS = 200  # of a failure's reason in the JSON


@dataclass(frozen=True)
class CanaryReport:
    """One round of questions: ``checks`` maps each touchpoint to "ok" or why it failed; ``version`` is the
    version the touchpoints answered with (the newest, if a switch is half done; None if none answered)."""

    ready: bool
    version: int | None
    checks: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"ready": self.ready, "version": self.version, "checks": self.checks}


def first_product_ids(model_repository: str, serving: ServingConfig, version: int,
                      count: int = CANARY_PRODUCTS) -> tuple[str, ...]:
    """The first ``count`` product ids of a served version, read from its ranking model's folder (only
    those lines: the file holds the whole catalogue)."""
    uri = storage.join(model_repository, serving.ranking_model_name, str(version), PRODUCT_IDS_FILE)
    ids: list[str] = []
    with storage.open_input(uri) as stream:
        while len(ids) < count:
            line = stream.readline()
            if not line:
                break
            if line.strip():
                ids.append(line.decode("utf-8").rstrip("\r\n"))
    if not ids:
        raise ValueError(f"{uri} lists no products")
    return tuple(ids)


class Canary:
    """The questions and their cached answers, for one Triton (a gRPC target) and its model repository."""

    def __init__(self, model_repository: str, triton_url: str, serving: ServingConfig = ServingConfig(), *,
                 log: Callable[[str], None] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.model_repository, self.triton_url, self.serving = str(model_repository), triton_url, serving
        self._grpc = tritonclient_module("grpc")
        self._client = self._connect()
        self._log, self._clock = log, clock
        self._touchpoints = (serving.model_name, serving.rerank_model_name, serving.similar_model_name)
        self._pool = ThreadPoolExecutor(max_workers=len(self._touchpoints), thread_name_prefix="canary")
        self._products: dict[int, tuple[str, ...]] = {}
        self._products_lock = threading.Lock()  # the touchpoints are asked in parallel
        self._lock = threading.Lock()  # one round at a time; probes arriving meanwhile get its result
        self._last: tuple[float, CanaryReport] | None = None

    def report(self) -> CanaryReport:
        """The cached report, or a fresh one when it is older than ``serving.canary_cache_s``."""
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= self.serving.canary_cache_s:
                previous = self._last[1] if self._last else None
                fresh = self.check()
                self._last = (self._clock(), fresh)
                self._announce(previous, fresh)
            return self._last[1]

    def check(self) -> CanaryReport:
        """Ask every touchpoint now (in parallel), bypassing the cache (one caller at a time: :meth:`report`)."""
        answers = dict(zip(self._touchpoints, self._pool.map(self._ask, self._touchpoints), strict=True))
        checks = {name: reason for name, (reason, _) in answers.items()}
        versions = [version for reason, version in answers.values() if reason == OK and version is not None]
        report = CanaryReport(all(reason == OK for reason in checks.values()), max(versions, default=None), checks)
        if not report.ready:
            # A channel whose server went away waits before it connects again (up to a second, longer before
            # connection.GRPC_RECONNECT): after a failed round, ask on a fresh one, so a restarted Triton's
            # first probe sees it back.
            self._client.close()
            self._client = self._connect()
        return report

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()

    def _connect(self) -> Any:
        return raw_client(self._grpc, server_address(self.triton_url), "grpc", self.serving.canary_timeout_s)

    def _ask(self, model: str) -> tuple[str, int | None]:
        """One touchpoint's question: ("ok", the version that answered) or (the reason it failed, None)."""
        from tritonclient.utils import InferenceServerException

        try:
            version = self._served_version(model)
            products = self._product_ids(version)
            result = self._client.infer(
                model, requests.infer_inputs(self._grpc, requests.canary_questions(products, self.serving)[model]),
                outputs=[self._grpc.InferRequestedOutput(name) for name in requests.RANKED_OUTPUTS],
                client_timeout=self.serving.canary_timeout_s)
        except InferenceServerException as error:  # down, unloaded, failing, too slow or refused
            return one_line(f"{error.status() or 'failed'}: {error.message()}", MAX_REASON_CHARS), None
        except (OSError, ValueError) as error:  # no ready version, or its product ids could not be read
            return one_line(error, MAX_REASON_CHARS), None
        except Exception as error:  # noqa: BLE001 (e.g. the bucket's 403): a failed check, never a failed probe
            return one_line(f"{type(error).__name__}: {error}", MAX_REASON_CHARS), None
        if result.as_numpy("PRODUCT_IDS").size == 0:
            return f"{model} answered with no products", None
        answered = result.get_response().model_version
        return OK, int(answered) if answered else version

    def _served_version(self, model: str) -> int:
        """The version of ``model`` Triton serves (the highest ready one); InferenceServerException when
        the model is unknown or not loaded, ValueError when it has no ready version."""
        metadata = self._client.get_model_metadata(model, client_timeout=self.serving.canary_timeout_s)
        versions = [int(v) for v in metadata.versions]
        if not versions:
            raise ValueError(f"Triton has no ready version of {model}")
        return max(versions)

    def _product_ids(self, version: int) -> tuple[str, ...]:
        """The canary's products of ``version``, read from the repository once per version."""
        with self._products_lock:
            if version not in self._products:
                ids = first_product_ids(self.model_repository, self.serving, version)
                if len(self._products) >= VERSIONS_KEPT:
                    self._products.pop(min(self._products))
                self._products[version] = ids
            return self._products[version]

    def _announce(self, previous: CanaryReport | None, fresh: CanaryReport) -> None:
        """Log a change of readiness or of a check's outcome (not every probe)."""
        if self._log is None or (previous is not None and previous.checks == fresh.checks
                                 and previous.version == fresh.version):
            return
        state = "ready" if fresh.ready else "NOT ready"
        failed = "; ".join(f"{name}: {reason}" for name, reason in fresh.checks.items() if reason != OK)
        self._log(f"canary: Triton at {self.triton_url} {state} (version {fresh.version})"
                  + (f": {failed}" if failed else ""))


class CanaryServer(ThreadingHTTPServer):
    """``GET /ready`` (200 or 503, the report as JSON) and ``GET /live`` (200) over a :class:`Canary`."""

    daemon_threads = True

    def __init__(self, canary: Canary, host: str, port: int) -> None:
        self.canary = canary
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: CanaryServer

    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        path = urlsplit(self.path).path
        if path == READY_PATH:
            report = self.server.canary.report()
            self._send(HTTPStatus.OK if report.ready else HTTPStatus.SERVICE_UNAVAILABLE, report.as_json())
        elif path == LIVE_PATH:
            self._send(HTTPStatus.OK, {"live": True})
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path: {path} (try {READY_PATH} or {LIVE_PATH})"})

    def _send(self, status: HTTPStatus, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's signature)
        """No access log: a probe every few seconds; the canary logs changes of readiness instead."""


@contextmanager
def serving_canary(canary: Canary, host: str, port: int) -> Iterator[CanaryServer]:
    """The canary's HTTP server answering in a background thread (port 0: a free one), stopped afterwards."""
    server = CanaryServer(canary, host, port)
    thread = threading.Thread(target=server.serve_forever, name="canary-http", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
