"""The request's context (device, region, local hour, weekday) on a REAL tritonserver: every touchpoint's
answer equals, bit for bit, the numpy twin built from the contract's own code (pooling, context tables,
scoring); no context, or an unknown one, answers as a context-free model; a bad clock is the request's
error; a version without context tables ignores the inputs and a corrupt table file is never served."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from fashionrec.app.client import FashionrecClient, RequestRejected
from fashionrec.config import ServingConfig
from fashionrec.contract import ops, validation
from fashionrec.contract.context import CONTEXT_FILE, FEATURES, ContextTables
from fashionrec.contract.scoring import ScoringTable
from fashionrec.repository import versions
from fashionrec.repository.check import InvalidVersion
from fashionrec.repository.publish import publish_model_repository
from fashionrec.serving import requests
from fashionrec.serving.connection import tritonclient_module
from fashionrec.serving.requests import History, RequestContext
from fashionrec.serving.server import TritonServer

if TYPE_CHECKING:
    from conftest import Catalogue

NOW = 1_800_000_000
DAY = 86_400
K = 10
TOUCHPOINTS = ("recommend", "rerank", "similar")
HERO = "P000123"  # similar's hero
MOBILE_PUSH = 1.0  # the mobile row is this times the target product's embedding: mobile customers lean to it
SMALL_MOVE = 0.2  # the other rows: small random moves
FULL = RequestContext("mobile", "SE", 20, 4)  # a Friday evening on a phone in Sweden
CLOCK_ONLY = RequestContext(hour=9, weekday=0)
UNKNOWN = RequestContext("fridge", "Atlantis", -1, -5)  # never seen, or negative: all unknown


@dataclass(frozen=True)
class Served:
    """The module's repository (version 1 has the context tables), its server and the tables."""

    repository: Path
    server: TritonServer
    tables: ContextTables
    export: Callable[[str, ContextTables | None], tuple[str, str]]  # (folder name, tables) -> publish inputs


def context_tables(catalogue: Catalogue) -> ContextTables:
    """Every feature: mobile pushes towards the catalogue's new product, the other rows move a little."""
    rng = np.random.default_rng(19)
    dim = catalogue.embeddings.shape[1]

    def table(values: int) -> np.ndarray:
        rows = (rng.normal(size=(1 + values, dim)) * SMALL_MOVE).astype(np.float32)
        rows[0] = 0.0
        return rows

    device = table(3)
    device[1] = MOBILE_PUSH * catalogue.embeddings[catalogue.product_ids.index(catalogue.new_product)]
    return ContextTables({"device": ("mobile", "desktop", "tablet"), "region": ("GB", "SE")},
                         {"device": device, "region": table(2), "hour": table(24), "weekday": table(7)})


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, catalogue: Catalogue, serving_config: ServingConfig,
           drill_serving_config: ServingConfig, export_writer: Callable) -> Iterator[Served]:
    """Version 1 with context tables, served with explicit model control (the last tests publish more)."""
    folder = tmp_path_factory.mktemp("context")

    def export(name: str, tables: ContextTables | None) -> tuple[str, str]:
        written = export_writer(folder / name, catalogue.product_ids, catalogue.embeddings, catalogue.is_new,
                                catalogue.prior)
        if tables is not None:
            (folder / name / CONTEXT_FILE).write_text(json.dumps(tables.to_json()))
        return written

    tables = context_tables(catalogue)
    published = publish_model_repository(*export("v1", tables), str(folder / "repo"), serving_config)
    with TritonServer(published.path, drill_serving_config, http_port=0, grpc_port=0, metrics_port=0,
                      model_control_mode="explicit") as server:
        yield Served(Path(published.path), server, tables, export)


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, served: Served, serving_config: ServingConfig) -> Iterator[FashionrecClient]:
    url = served.server.http_url if request.param == "http" else served.server.grpc_url
    with FashionrecClient(url, request.param, serving_config) as typed_client:
        yield typed_client


def history(catalogue: Catalogue, seed: int = 0, n: int = 24) -> History:
    """Typed, timestamped events, more than the pooling window."""
    rng = np.random.default_rng(seed)
    ids = [catalogue.product_ids[i] for i in rng.choice(len(catalogue.product_ids) - 1, n, replace=False)]
    types = list(rng.choice(["click", "add_to_bag", "save_for_later", "purchase"], n))
    return History(ids, types, [int(NOW - age * DAY) for age in rng.uniform(0, 60, n)], request_time=NOW)


def page(catalogue: Catalogue) -> list[str]:
    """rerank's products: a sample with the new product (the mobile push's target) among them."""
    rows = np.random.default_rng(7).choice(len(catalogue.product_ids) - 1, 50, replace=False)
    return [catalogue.product_ids[i] for i in rows] + [catalogue.new_product]


# -- the numpy twin: the contract's own code, as the served models run it -----------------------------------
def twin_vector(catalogue: Catalogue, customer: History, tables: ContextTables | None,
                context: RequestContext | None) -> np.ndarray:
    """[1, D]: pooled as customer_vector pools (ops + validation), then moved by the context tables."""
    ids = np.array(customer.product_ids, dtype=object)
    weights = validation.request_weights(len(ids), catalogue.aggregation, customer.event_types,
                                         np.array(customer.timestamps, np.int64), None, customer.request_time)
    window = ops.pooling_window(len(ids), int(catalogue.aggregation["window"]))
    index = {pid: row for row, pid in enumerate(catalogue.product_ids)}
    vector = ops.customer_vector(catalogue.embeddings, ops.lookup_rows(index, ids[window]), weights[window])[None]
    if tables is None or context is None:
        return vector
    return tables.adjust(vector, {f: [getattr(context, f)] for f in FEATURES if getattr(context, f) is not None})


def twin_ranking(catalogue: Catalogue, vector: np.ndarray, k: int, candidates: list[str] | None = None,
                 excluded: tuple[str, ...] = ()) -> tuple[list[str], np.ndarray]:
    """rank_products' answer: ScoringTable logits (dot + prior), ops' exact top-k, sigmoid scores."""
    table = ScoringTable(catalogue.embeddings, prior=catalogue.prior)
    index = {pid: row for row, pid in enumerate(catalogue.product_ids)}
    rows = None if candidates is None else ops.lookup_rows(index, candidates)
    dots = table.scores(vector)[0] if rows is None else table.scores_of(vector[0], rows)
    positions = ops.rank_positions(dots, rows, ops.lookup_rows(index, excluded), k)
    ranked = positions if rows is None else rows[positions]
    return [catalogue.product_ids[r] for r in ranked], ops.sigmoid(dots[positions])


def twin(touchpoint: str, catalogue: Catalogue, serving: ServingConfig, tables: ContextTables | None,
         context: RequestContext | None, seed: int = 0) -> tuple[list[str], np.ndarray]:
    vector = twin_vector(catalogue, history(catalogue, seed), tables, context)
    if touchpoint == "recommend":
        return twin_ranking(catalogue, vector, K)
    if touchpoint == "rerank":
        products = page(catalogue)
        return twin_ranking(catalogue, vector, len(products), products)
    hero = catalogue.embeddings[catalogue.product_ids.index(HERO)]
    return twin_ranking(catalogue, ops.blend(hero, vector[0], serving.similar_alpha)[None], K, excluded=(HERO,))


def ask(client: FashionrecClient, touchpoint: str, catalogue: Catalogue, context: RequestContext | None,
        seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The served answer, the request built by fashionrec.serving.requests with its context."""
    customer, serving = history(catalogue, seed), client.serving
    if touchpoint == "recommend":
        model, tensors = serving.model_name, requests.recommend_tensors(customer, K, serving, context=context)
    elif touchpoint == "rerank":
        model, tensors = serving.rerank_model_name, requests.rerank_tensors(customer, page(catalogue), context=context)
    else:
        model, tensors = serving.similar_model_name, requests.similar_tensors(HERO, customer, K, serving,
                                                                              context=context)
    inputs = requests.infer_inputs(tritonclient_module(client.protocol), tensors)
    result = client.infer(model, inputs, requests.RANKED_OUTPUTS)
    ids = [pid.decode("utf-8") for pid in result.as_numpy("PRODUCT_IDS").reshape(-1)]
    return ids, result.as_numpy("SCORES").reshape(-1)


BATCHED_RTOL = 1e-6  # a few float32 ulps: BLAS may sum a batch's dot products in another order than one row's


def assert_same(got: tuple[list[str], np.ndarray], expected: tuple[list[str], np.ndarray], rtol: float = 0.0) -> None:
    """The same products in the same order, with the same scores (bit for bit unless ``rtol``)."""
    assert got[0] == expected[0]
    np.testing.assert_allclose(got[1], expected[1], rtol=rtol, atol=0.0)


# -- (a) (b) (c): context, none, unknown ----------------------------------------------------------------------
@pytest.mark.parametrize("touchpoint", TOUCHPOINTS)
@pytest.mark.parametrize("context", [FULL, CLOCK_ONLY], ids=["full", "clock-only"])
def test_the_context_moves_every_touchpoint_exactly_as_the_numpy_twin(
        client: FashionrecClient, served: Served, catalogue: Catalogue, touchpoint: str,
        context: RequestContext) -> None:
    got = ask(client, touchpoint, catalogue, context)
    assert_same(got, twin(touchpoint, catalogue, client.serving, served.tables, context))
    assert not np.array_equal(got[1], ask(client, touchpoint, catalogue, None)[1])
    if context.device == "mobile" and touchpoint != "similar":  # similar's hero outweighs the push
        assert got[0][0] == catalogue.new_product


@pytest.mark.parametrize("touchpoint", TOUCHPOINTS)
def test_no_context_or_an_unknown_one_answers_as_a_context_free_model(
        client: FashionrecClient, catalogue: Catalogue, touchpoint: str) -> None:
    context_free = twin(touchpoint, catalogue, client.serving, None, None)
    assert_same(ask(client, touchpoint, catalogue, None), context_free)
    assert_same(ask(client, touchpoint, catalogue, RequestContext()), context_free)  # nothing known: nothing sent
    assert_same(ask(client, touchpoint, catalogue, UNKNOWN), context_free)


def test_requests_with_different_contexts_batched_together_each_get_their_own(
        served: Served, catalogue: Catalogue, serving_config: ServingConfig) -> None:
    """Dynamic batching gives customer_vector several requests in one execute(): contexts must not mix. (The
    ranking step scores the batch with one matrix product, hence BATCHED_RTOL.)"""
    contexts = [FULL, None, CLOCK_ONLY, UNKNOWN] * 3

    def job(n: int) -> tuple[list[str], np.ndarray]:
        with FashionrecClient(served.server.grpc_url, "grpc", serving_config) as client:
            return ask(client, "recommend", catalogue, contexts[n], seed=n)

    with ThreadPoolExecutor(len(contexts)) as pool:
        answers = list(pool.map(job, range(len(contexts))))
    for n, (context, got) in enumerate(zip(contexts, answers, strict=True)):
        assert_same(got, twin("recommend", catalogue, serving_config, served.tables, context, seed=n), BATCHED_RTOL)


# -- (d) a clock out of range ---------------------------------------------------------------------------------
@pytest.mark.parametrize("touchpoint, context, message", [
    ("recommend", RequestContext(hour=24), "CONTEXT_HOUR must be 0..23"),
    ("similar", RequestContext("mobile", weekday=7), "CONTEXT_WEEKDAY must be 0..6"),
], ids=["hour-24", "weekday-7"])
def test_a_clock_out_of_range_is_the_requests_error_and_the_server_keeps_serving(
        served: Served, catalogue: Catalogue, serving_config: ServingConfig, touchpoint: str,
        context: RequestContext, message: str) -> None:
    with FashionrecClient(served.server.grpc_url, "grpc", serving_config) as client:
        with pytest.raises(RequestRejected, match=message) as raised:
            ask(client, touchpoint, catalogue, context)
        assert str(raised.value.__cause__.status()) == "StatusCode.INVALID_ARGUMENT"  # a client error, not a 500
        assert_same(ask(client, touchpoint, catalogue, FULL),
                    twin(touchpoint, catalogue, serving_config, served.tables, FULL))


# -- (e) versions: without context tables, and with a corrupt table file ------------------------------------------
def _serving(served: Served, serving_config: ServingConfig) -> set[int]:
    with FashionrecClient(served.server.grpc_url, "grpc", serving_config) as client:
        return {client.served_version(name) for name in versions.ensembles(serving_config)}


def _answers_with_context(served: Served, catalogue: Catalogue, serving_config: ServingConfig,
                          tables: ContextTables | None) -> None:
    """Every touchpoint, asked with FULL context, answers as the twin with ``tables`` (None: context-free)."""
    with FashionrecClient(served.server.grpc_url, "grpc", serving_config) as client:
        for touchpoint in TOUCHPOINTS:
            assert_same(ask(client, touchpoint, catalogue, FULL),
                        twin(touchpoint, catalogue, serving_config, tables, FULL))


def test_a_version_without_context_tables_takes_the_inputs_and_ignores_them(
        served: Served, catalogue: Catalogue, serving_config: ServingConfig) -> None:
    plain = publish_model_repository(*served.export("plain", None), str(served.repository), serving_config,
                                     server_url=served.server.grpc_url)
    try:
        assert _serving(served, serving_config) == {plain.version}
        _answers_with_context(served, catalogue, serving_config, None)
        with FashionrecClient(served.server.grpc_url, "grpc", serving_config) as client:
            with pytest.raises(RequestRejected, match="CONTEXT_HOUR must be 0..23"):  # still checked
                ask(client, "rerank", catalogue, RequestContext(hour=24))
    finally:
        versions.activate(str(served.repository), 1, serving_config, served.server.grpc_url)
    assert _serving(served, serving_config) == {1}
    _answers_with_context(served, catalogue, serving_config, served.tables)


@pytest.mark.parametrize("model", ["customer_model_name", "ranking_model_name"])  # both pool with the tables
def test_a_corrupt_context_file_is_never_served_and_the_served_version_keeps_answering(
        served: Served, catalogue: Catalogue, serving_config: ServingConfig, monkeypatch: pytest.MonkeyPatch,
        model: str) -> None:
    repository, url = str(served.repository), served.server.grpc_url
    corrupt = publish_model_repository(*served.export(f"corrupt-{model}", served.tables), repository, serving_config,
                                       server_url=url).version
    versions.activate(repository, 1, serving_config, url)  # the corrupted version stays loaded beside it
    model_name = getattr(serving_config, model)
    tables_file = served.repository / model_name / str(corrupt) / CONTEXT_FILE
    pristine = tables_file.read_text()
    tables_file.write_text(pristine[: len(pristine) // 2])  # a truncated upload
    pins = {path: path.read_text() for path in served.repository.glob("*/config.pbtxt")}

    with pytest.raises(InvalidVersion, match=rf"{model_name}: .*{CONTEXT_FILE}: not a context"):
        versions.activate(repository, corrupt, serving_config, url)  # the check, before any config names it
    assert {path: path.read_text() for path in pins} == pins

    monkeypatch.setattr(versions, "check_version", lambda *args: None)  # past the check: Triton itself refuses
    with pytest.raises(versions.VersionError, match=rf"(?s)serving stays on version 1.*{CONTEXT_FILE}"):
        versions.activate(repository, corrupt, serving_config, url)
    assert _serving(served, serving_config) == {1}
    _answers_with_context(served, catalogue, serving_config, served.tables)

    tables_file.write_text(pristine)  # repaired, the version serves
    versions.activate(repository, corrupt, serving_config, url)
    assert _serving(served, serving_config) == {corrupt}
    _answers_with_context(served, catalogue, serving_config, served.tables)
