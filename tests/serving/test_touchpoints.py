"""Every touchpoint (`recommend` with restrictions, `rerank`, `similar`) on a REAL tritonserver, over HTTP
and gRPC, against plain-numpy references written here without fashionrec code; and bad requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from click.testing import CliRunner
from tritonclient.utils import InferenceServerException

from fashionrec.app.cli import main
from fashionrec.app.client import FashionrecClient, History, Recommendation, RecommendError, RequestRejected
from fashionrec.config import ServingConfig
from fashionrec.serving.server import TritonServer
from tests.serving.counters import read_until

if TYPE_CHECKING:
    from conftest import Catalogue

DAY = 86_400
NOW = 1_800_000_000  # REQUEST_TIME of the tests: ages are deterministic


def customer_vector(catalogue: Catalogue, history: History) -> np.ndarray:
    """Weighted mean in float64 of the last ``window`` events: weight = explicit or event-type weight,
    halved per half-life of age and per half-life of newer events; older events weigh nothing."""
    agg = catalogue.aggregation
    n = len(history.product_ids)
    weights = np.ones(n)
    if history.weights is not None:
        weights = np.array(history.weights, dtype=np.float64)
    elif history.event_types is not None:
        weights = np.array([agg["event_weights"][t] for t in history.event_types])
    if history.timestamps is not None:
        ages = np.maximum((history.request_time - np.array(history.timestamps)) / DAY, 0)
        weights = weights * 0.5 ** (ages / agg["half_life_days"])
    weights = weights * 0.5 ** (np.arange(n)[::-1] / agg["half_life_events"])
    weights = np.where(np.arange(n) >= n - agg["window"], weights, 0.0)
    index = {pid: row for row, pid in enumerate(catalogue.product_ids)}
    known = [(index[p], w) for p, w in zip(history.product_ids, weights, strict=True) if p in index]
    total = sum(w for _, w in known)
    if total <= 0:
        return np.zeros(catalogue.embeddings.shape[1])
    return sum(w * catalogue.embeddings[row].astype(np.float64) for row, w in known) / total


def ranked(catalogue: Catalogue, vector: np.ndarray, candidates: list[str], k: int) -> tuple[list[str], np.ndarray]:
    """Candidates by logit (dot product + popularity prior) descending, ties by candidate order, with
    sigmoid scores."""
    index = {pid: row for row, pid in enumerate(catalogue.product_ids)}
    dots = {pid: float(catalogue.embeddings[index[pid]].astype(np.float64) @ vector) + float(catalogue.prior[index[pid]])
            for pid in candidates}
    order = sorted(range(len(candidates)), key=lambda i: (-dots[candidates[i]], i))[:k]
    ids = [candidates[i] for i in order]
    return ids, 1.0 / (1.0 + np.exp(-np.array([dots[p] for p in ids])))


def assert_same(got: list[Recommendation], expected: tuple[list[str], np.ndarray]) -> None:
    assert [r.product_id for r in got] == expected[0]
    np.testing.assert_allclose([r.score for r in got], expected[1], rtol=1e-5)


def sample(catalogue: Catalogue, n: int, seed: int) -> list[str]:
    rows = np.random.default_rng(seed).choice(len(catalogue.product_ids), n, replace=False)
    return [catalogue.product_ids[i] for i in rows]


def typed_history(catalogue: Catalogue, seed: int = 0, n: int = 12) -> History:
    rng = np.random.default_rng(seed)
    types = list(rng.choice(["click", "add_to_bag", "save_for_later", "purchase"], n))
    stamps = [int(NOW - rng.uniform(-1, 60) * DAY) for _ in range(n)]  # one may lie in the future: age 0
    return History(sample(catalogue, n, seed), types, stamps, request_time=NOW)


# -- recommend ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_recommend_pools_event_types_and_recency_as_published(fashion: FashionrecClient, catalogue: Catalogue,
                                                              seed: int) -> None:
    history = typed_history(catalogue, seed)
    assert_same(fashion.recommend(history, 15), ranked(catalogue, customer_vector(catalogue, history),
                                                       catalogue.product_ids, 15))


def test_explicit_weights_replace_the_event_type_weights(fashion: FashionrecClient, catalogue: Catalogue) -> None:
    history = typed_history(catalogue, 2, 5)
    explicit = History(history.product_ids, history.event_types, history.timestamps, [0.5, 4, 1, 2, 0], NOW)
    assert_same(fashion.recommend(explicit, 10),
                ranked(catalogue, customer_vector(catalogue, explicit), catalogue.product_ids, 10))
    assert fashion.recommend(explicit, 10) != fashion.recommend(history, 10)


@pytest.mark.parametrize("candidate_set", ["sale", "category:dresses", "new_in"])
def test_recommend_within_a_published_candidate_set(fashion: FashionrecClient, catalogue: Catalogue,
                                                    candidate_set: str) -> None:
    history = typed_history(catalogue, 3)
    members = catalogue.candidate_sets[candidate_set]
    assert_same(fashion.recommend(history, 8, candidate_set=candidate_set),
                ranked(catalogue, customer_vector(catalogue, history), members, 8))


def test_recommend_within_explicit_candidates_keeps_ties_in_their_order(fashion: FashionrecClient,
                                                                        catalogue: Catalogue) -> None:
    history = History(sample(catalogue, 4, 4))
    candidates = sample(catalogue, 40, 5)
    assert_same(fashion.recommend(history, 12, candidates=candidates),
                ranked(catalogue, customer_vector(catalogue, history), candidates, 12))
    unknown_history = ["UNKNOWN"]  # zero vector: the popularity prior alone ranks
    zero = np.zeros(catalogue.embeddings.shape[1])
    assert_same(fashion.recommend(unknown_history, 5, candidates=candidates), ranked(catalogue, zero, candidates, 5))
    no_prior = catalogue.candidate_sets["new_in"][::-1][:8]  # new products: no prior, all tie at 0.5
    assert [r.product_id for r in fashion.recommend(unknown_history, 5, candidates=no_prior)] == no_prior[:5]


def test_recommend_excludes_purchases_and_given_products(fashion: FashionrecClient, catalogue: Catalogue) -> None:
    history = typed_history(catalogue, 6, 20)
    vector = customer_vector(catalogue, history)
    bought = {p for p, t in zip(history.product_ids, history.event_types, strict=True) if t == "purchase"}
    exclude = sample(catalogue, 30, 7) + ["NOT-A-PRODUCT"]  # unknown exclusions are harmless
    allowed = [p for p in catalogue.product_ids if p not in bought and p not in exclude]
    got = fashion.recommend(history, 25, exclude_purchased=True, exclude=exclude)
    assert_same(got, ranked(catalogue, vector, allowed, 25))
    assert bought and bought & {r.product_id for r in fashion.recommend(history, 100)}  # they would be there


# -- rerank ------------------------------------------------------------------------------------------
def test_rerank_orders_the_given_products_with_scores(fashion: FashionrecClient, catalogue: Catalogue) -> None:
    history = typed_history(catalogue, 8)
    page = sample(catalogue, 60, 9)
    got = fashion.rerank(history, page)
    assert sorted(r.product_id for r in got) == sorted(page)
    assert_same(got, ranked(catalogue, customer_vector(catalogue, history), page, len(page)))


# -- similar -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [None, 0.0, 0.8, 1.0])
def test_similar_blends_hero_and_customer_and_never_returns_the_hero(
        fashion: FashionrecClient, catalogue: Catalogue, serving_config: ServingConfig, alpha: float | None) -> None:
    history, hero = typed_history(catalogue, 10), catalogue.product_ids[123]
    weight = serving_config.similar_alpha if alpha is None else alpha
    vector = weight * catalogue.embeddings[123].astype(np.float64) + (1 - weight) * customer_vector(catalogue, history)
    others = [p for p in catalogue.product_ids if p != hero]
    assert_same(fashion.similar(hero, history, 10, alpha=alpha), ranked(catalogue, vector, others, 10))


def test_similar_without_history_ranks_by_the_hero_alone(fashion: FashionrecClient, catalogue: Catalogue) -> None:
    hero = catalogue.product_ids[77]
    others = [p for p in catalogue.product_ids if p != hero]
    assert_same(fashion.similar(hero, k=6), ranked(catalogue, catalogue.embeddings[77].astype(np.float64), others, 6))


def test_similar_within_a_candidate_set(fashion: FashionrecClient, catalogue: Catalogue) -> None:
    hero, history = catalogue.product_ids[14], typed_history(catalogue, 11)  # P000014 is itself on sale
    vector = 0.5 * catalogue.embeddings[14].astype(np.float64) + 0.5 * customer_vector(catalogue, history)
    members = [p for p in catalogue.candidate_sets["sale"] if p != hero]
    assert_same(fashion.similar(hero, history, 5, alpha=0.5, candidate_set="sale"), ranked(catalogue, vector, members, 5))


# -- the whole seen-history: pooled over the window, excluded with EXCLUDE_SEEN ------------------------
SEEN_EVENTS = 5_000  # the design target: a heavy customer's past interactions


def seen_history(catalogue: Catalogue, seed: int, events: int = SEEN_EVENTS, products: int = 120) -> History:
    """A heavy customer's whole history, oldest first: ``events`` events over ``products`` distinct
    products (each seen many times) and two ids the catalogue no longer has, typed and timestamped."""
    rng = np.random.default_rng(seed)
    pool = sample(catalogue, products, seed) + ["GONE-1", "GONE-2"]
    ids = [pool[i] for i in rng.integers(0, len(pool), events)]
    types = list(rng.choice(["click", "add_to_bag", "save_for_later", "purchase"], events))
    stamps = sorted(int(NOW - age * DAY) for age in rng.uniform(0, 400, events))
    return History(ids, types, stamps, request_time=NOW)


def last_events(history: History, n: int) -> History:
    return History(history.product_ids[-n:], history.event_types[-n:], history.timestamps[-n:],
                   request_time=history.request_time)


def not_seen(products: list[str], history: History, *others: str) -> list[str]:
    hidden = set(history.product_ids) | set(others)
    return [p for p in products if p not in hidden]


def test_a_whole_seen_history_pools_its_window_and_exclude_seen_removes_every_product_of_it(
        fashion: FashionrecClient, catalogue: Catalogue) -> None:
    history = seen_history(catalogue, 20)
    vector = customer_vector(catalogue, history)  # the last `window` events only
    got = fashion.recommend(history, 60)
    assert got == fashion.recommend(last_events(history, catalogue.aggregation["window"]), 60)  # bit for bit
    assert_same(got, ranked(catalogue, vector, catalogue.product_ids, 60))
    assert set(history.product_ids) & {r.product_id for r in got}  # without the flag, seen products come back
    assert_same(fashion.recommend(history, 60, exclude_seen=True),
                ranked(catalogue, vector, not_seen(catalogue.product_ids, history), 60))


def test_exclude_seen_adds_to_the_other_exclusions_within_candidates(fashion: FashionrecClient,
                                                                     catalogue: Catalogue) -> None:
    history = seen_history(catalogue, 21)
    vector = customer_vector(catalogue, history)
    candidates, exclude = sample(catalogue, 100, 22), sample(catalogue, 10, 23)
    assert set(history.product_ids) & set(candidates)
    assert_same(fashion.recommend(history, 30, candidates=candidates, exclude=exclude, exclude_purchased=True,
                                  exclude_seen=True),
                ranked(catalogue, vector, not_seen(candidates, history, *exclude), 30))
    assert_same(fashion.recommend(history, 10, candidate_set="sale", exclude_seen=True),
                ranked(catalogue, vector, not_seen(catalogue.candidate_sets["sale"], history), 10))


@pytest.mark.parametrize("hero_seen", [False, True], ids=["hero-unseen", "hero-seen"])
def test_similar_with_exclude_seen_returns_neither_the_hero_nor_the_history(
        fashion: FashionrecClient, catalogue: Catalogue, serving_config: ServingConfig, hero_seen: bool) -> None:
    history = seen_history(catalogue, 24)
    known = [p for p in catalogue.product_ids if (p in history.product_ids) == hero_seen]
    hero = known[-1]
    alpha = serving_config.similar_alpha
    vector = (alpha * catalogue.embeddings[catalogue.product_ids.index(hero)].astype(np.float64)
              + (1 - alpha) * customer_vector(catalogue, history))
    assert_same(fashion.similar(hero, history, 20, exclude_seen=True),
                ranked(catalogue, vector, not_seen(catalogue.product_ids, history, hero), 20))
    assert_same(fashion.similar(hero, history, 5, candidate_set="sale", exclude_seen=True),
                ranked(catalogue, vector, not_seen(catalogue.candidate_sets["sale"], history, hero), 5))
    without = {r.product_id for r in fashion.similar(hero, history, 100)}
    assert hero not in without and without & set(history.product_ids)


def test_a_history_of_max_history_length_is_served_and_one_more_id_is_refused(
        fashion: FashionrecClient, catalogue: Catalogue, serving_config: ServingConfig) -> None:
    """10,000 ids fit Triton's and tritonclient's default message limits over HTTP and gRPC."""
    limit = serving_config.max_history_length
    history = seen_history(catalogue, 25, events=limit)
    assert_same(fashion.recommend(history, 10, exclude_seen=True),
                ranked(catalogue, customer_vector(catalogue, history), not_seen(catalogue.product_ids, history), 10))
    with pytest.raises(RecommendError, match=f"history has {limit + 1} products, more than max_history_length={limit}"):
        fashion.recommend(History([*history.product_ids, "P000001"]), 10, exclude_seen=True)


def test_exclude_seen_is_per_request_within_a_dynamic_batch(triton: TritonServer, catalogue: Catalogue,
                                                            serving_config: ServingConfig) -> None:
    histories = [seen_history(catalogue, 30 + n, events=200 + 300 * n) for n in range(8)]

    def job(n: int) -> list[Recommendation]:
        with FashionrecClient(triton.grpc_url, "grpc", serving_config) as client:
            return client.recommend(histories[n], 12, exclude_seen=n % 2 == 0)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(job, range(len(histories))))
    for n, (history, got) in enumerate(zip(histories, answers, strict=True)):
        allowed = not_seen(catalogue.product_ids, history) if n % 2 == 0 else catalogue.product_ids
        assert_same(got, ranked(catalogue, customer_vector(catalogue, history), allowed, 12))


def _infer_raw(triton: TritonServer, model: str, tensors: list[tuple[str, np.ndarray, str]]) -> grpcclient.InferResult:
    """One model (a step, not a touchpoint) asked directly with ``(name, data, datatype)`` inputs."""
    inputs = []
    for name, data, datatype in tensors:
        inputs.append(grpcclient.InferInput(name, list(data.shape), datatype))
        inputs[-1].set_data_from_numpy(data)
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        return client.infer(model, inputs)


def test_rank_products_refuses_exclude_seen_without_a_history(triton: TritonServer, catalogue: Catalogue,
                                                              serving_config: ServingConfig) -> None:
    with pytest.raises(InferenceServerException, match="EXCLUDE_SEEN needs HISTORY_PRODUCT_IDS"):
        _infer_raw(triton, serving_config.ranking_model_name, [("CUSTOMER_VECTOR", catalogue.embeddings[:1], "FP32"),
                                                               ("TOP_K", np.array([[5]], np.int32), "INT32"),
                                                               ("EXCLUDE_SEEN", np.array([[True]]), "BOOL")])


def test_rank_products_pools_a_history_as_customer_vector_does_and_needs_one_or_a_vector(
        triton: TritonServer, catalogue: Catalogue, serving_config: ServingConfig) -> None:
    history = History(sample(catalogue, 12, 31))
    ids = np.array([[pid.encode() for pid in history.product_ids]], np.object_)
    top_k = ("TOP_K", np.array([[7]], np.int32), "INT32")
    history_input = ("HISTORY_PRODUCT_IDS", ids, "BYTES")
    vector = _infer_raw(triton, serving_config.customer_model_name, [history_input]).as_numpy("CUSTOMER_VECTOR")
    pooled_here = _infer_raw(triton, serving_config.ranking_model_name, [history_input, top_k])
    given = _infer_raw(triton, serving_config.ranking_model_name, [("CUSTOMER_VECTOR", vector, "FP32"), top_k])
    assert pooled_here.as_numpy("PRODUCT_IDS").tolist() == given.as_numpy("PRODUCT_IDS").tolist()
    np.testing.assert_array_equal(pooled_here.as_numpy("SCORES"), given.as_numpy("SCORES"))  # same vector, bit for bit
    with pytest.raises(InferenceServerException, match="CUSTOMER_VECTOR or HISTORY_PRODUCT_IDS is required"):
        _infer_raw(triton, serving_config.ranking_model_name, [top_k])


def test_the_cli_excludes_the_seen_history_on_recommend_and_similar(triton: TritonServer, catalogue: Catalogue,
                                                                    serving_config: ServingConfig) -> None:
    history = History(sample(catalogue, 40, 26))  # longer than the window
    options = [arg for pid in history.product_ids for arg in ("--history", pid)] + ["--url", triton.grpc_url]
    vector = customer_vector(catalogue, history)
    result = CliRunner().invoke(main, ["recommend", *options, "--k", "6", "--exclude-seen"])
    assert result.exit_code == 0, result.output
    expected = ranked(catalogue, vector, not_seen(catalogue.product_ids, history), 6)[0]
    assert [line.split()[1] for line in result.output.splitlines()[1:]] == expected
    hero, alpha = catalogue.product_ids[5], serving_config.similar_alpha
    assert hero not in history.product_ids
    blended = alpha * catalogue.embeddings[5].astype(np.float64) + (1 - alpha) * vector
    result = CliRunner().invoke(main, ["similar", *options, "--hero", hero, "--k", "4", "--exclude-seen"])
    assert result.exit_code == 0, result.output
    expected = ranked(catalogue, blended, not_seen(catalogue.product_ids, history, hero), 4)[0]
    assert [line.split()[1] for line in result.output.splitlines()[1:]] == expected


# -- bad requests ------------------------------------------------------------------------------------
def _bad_calls(cfg: ServingConfig) -> dict:
    """Each: (call on a FashionrecClient, part of the expected message)."""
    ok = ["P000001"]
    return {
        "empty-history": (lambda c: c.recommend([], 5), "HISTORY_PRODUCT_IDS is empty"),
        "long-history": (lambda c: c.rerank(ok * (cfg.max_history_length + 1), ok), "more than max_history_length"),
        "k-zero": (lambda c: c.recommend(ok, 0), f"TOP_K must be between 1 and {cfg.max_top_k}, got 0"),
        "k-too-large": (lambda c: c.similar("P000002", ok, cfg.max_top_k + 1), f"got {cfg.max_top_k + 1}"),
        "unknown-event-type": (lambda c: c.recommend(History(ok, ["view"]), 5), "unknown HISTORY_EVENT_TYPES 'view'"),
        "types-length": (lambda c: c.recommend(History(ok, ["click", "click"]), 5),
                         "HISTORY_EVENT_TYPES has 2 values but HISTORY_PRODUCT_IDS has 1"),
        "timestamps-length": (lambda c: c.recommend(History(ok, timestamps=[1, 2]), 5), "HISTORY_TIMESTAMPS has 2"),
        "unknown-set": (lambda c: c.recommend(ok, 5, candidate_set="black-friday"),
                        "unknown CANDIDATE_SET 'black-friday'; published sets: 'category:dresses', 'new_in', 'sale'"),
        "set-and-ids": (lambda c: c.recommend(ok, 5, candidates=ok, candidate_set="sale"), "not both"),
        "unknown-candidate": (lambda c: c.recommend(ok, 5, candidates=["P000003", "NOPE"]),
                              "unknown product ids in CANDIDATE_PRODUCT_IDS: 'NOPE'"),
        "rerank-unknown": (lambda c: c.rerank(ok, ["P000003", "NOPE"]), "unknown product ids in CANDIDATE_PRODUCT_IDS"),
        "rerank-duplicates": (lambda c: c.rerank(ok, ["P000003", "P000003"]), "duplicate product ids"),
        "rerank-too-many": (lambda c: c.rerank(ok, [f"P{i:06d}" for i in range(cfg.max_candidates + 1)]),
                            f"1 to {cfg.max_candidates} ids, got {cfg.max_candidates + 1}"),
        "exclude-purchased-without-types": (lambda c: c.recommend(ok, 5, exclude_purchased=True),
                                            "EXCLUDE_PURCHASED needs HISTORY_EVENT_TYPES"),
        "unknown-hero": (lambda c: c.similar("NOPE", ok), "unknown product ids in HERO_PRODUCT_ID: 'NOPE'"),
        "alpha-out-of-range": (lambda c: c.similar("P000002", ok, alpha=1.5), "ALPHA must be between 0 and 1"),
    }


BAD_CASES = sorted(_bad_calls(ServingConfig()))


@pytest.mark.parametrize("case", BAD_CASES)
def test_a_bad_request_gets_its_own_clear_error(fashion: FashionrecClient, catalogue: Catalogue,
                                                serving_config: ServingConfig, case: str) -> None:
    call, message = _bad_calls(serving_config)[case]
    with pytest.raises(RequestRejected, match=message.replace("(", r"\(").replace(")", r"\)")) as raised:
        call(fashion)
    assert str(raised.value.__cause__.status()) in ("400", "StatusCode.INVALID_ARGUMENT")  # a client error, not a 500
    assert fashion.is_ready()
    history = History(["P000001"])
    assert_same(fashion.recommend(history, 5), ranked(catalogue, customer_vector(catalogue, history),
                                                     catalogue.product_ids, 5))


def test_bad_and_good_requests_batched_together_each_get_their_own_answer(
        triton: TritonServer, catalogue: Catalogue, serving_config: ServingConfig) -> None:
    """Dynamic batching mixes them in one execute(): a refusal must not spill onto its neighbours."""
    bad = list(_bad_calls(serving_config).values())
    histories = [History(sample(catalogue, 3, seed)) for seed in range(len(bad) * 2)]

    def job(n: int) -> object:
        with FashionrecClient(triton.grpc_url, "grpc", serving_config) as client:
            if n % 2:
                call, message = bad[n // 2]
                with pytest.raises(RecommendError, match=message.split("(")[0]):
                    call(client)
                return None
            return client.recommend(histories[n], 7)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(job, range(len(bad) * 2)))
    for n in range(0, len(answers), 2):
        assert_same(answers[n], ranked(catalogue, customer_vector(catalogue, histories[n]), catalogue.product_ids, 7))


@pytest.mark.parametrize("tensor, datatype, shape, message", [
    (np.array([[5.0]], np.float32), "FP32", [1, 1], "TOP_K"),
    (np.array([[5, 6]], np.int32), "INT32", [1, 2], "TOP_K"),
], ids=["wrong-dtype", "wrong-shape"])
def test_wrong_dtype_or_shape_is_refused_by_triton_with_the_input_named(
        triton: TritonServer, tensor: np.ndarray, datatype: str, shape: list[int], message: str) -> None:
    client = grpcclient.InferenceServerClient(triton.grpc_url)
    ids = grpcclient.InferInput("HISTORY_PRODUCT_IDS", [1, 1], "BYTES")
    ids.set_data_from_numpy(np.array([[b"P000001"]], dtype=np.object_))
    top_k = grpcclient.InferInput("TOP_K", shape, datatype)
    top_k.set_data_from_numpy(tensor)
    with pytest.raises(Exception, match=message):
        client.infer("recommend", [ids, top_k])
    assert client.is_model_ready("recommend")
    client.close()


def _metric_total(metrics_url: str, name: str, label: str) -> float:
    """Sum of a Prometheus metric's samples whose labels contain ``label`` (e.g. model="recommend")."""
    import urllib.request

    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode("utf-8")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label in line)


def test_refused_requests_are_counted_apart_from_failures(triton: TritonServer, serving_config: ServingConfig) -> None:
    """Triton counts a refusal as a success of the python model and a failure (reason OTHER) of its ensemble,
    like a real fault; fashionrec_requests_refused_total lets alerts tell the two apart."""
    refused_metric, failures_metric = "fashionrec_requests_refused_total", "nv_inference_request_failure"
    ranking = f'model="{serving_config.ranking_model_name}"'
    ensemble = f'model="{serving_config.model_name}"'
    refused_before = _metric_total(triton.metrics_url, refused_metric, ranking)
    failed_before = _metric_total(triton.metrics_url, failures_metric, ensemble)
    with FashionrecClient(triton.grpc_url, "grpc", serving_config) as client:
        for _ in range(3):
            with pytest.raises(RequestRejected):
                client.recommend(History(["P000001"]), 5, candidate_set="black-friday")
    assert _metric_total(triton.metrics_url, refused_metric, ranking) == refused_before + 3
    failed = read_until(lambda: _metric_total(triton.metrics_url, failures_metric, ensemble),
                        lambda total: total > failed_before)  # counted just after the answer
    assert failed > failed_before  # Triton's own view
