"""The whole pipeline through kfp.local, then its published repository on a real tritonserver.

One small run (module fixture) feeds every test here; a second, failing-gate run checks that an
unblessed model never reaches the repository.
"""

import json

import numpy as np
import pandas as pd
import pytest

from fashionrec.config import FUTURE_SET_SETTINGS, PipelineConfig, dataset_config
from fashionrec.model.aggregation import AGGREGATION_FILE
from fashionrec.app.customers import load_events, recent_history
from fashionrec.evaluation.evaluate import evaluate
from fashionrec.artifacts import HOLDOUT_EVENTS_FILE, TARGET_COUNTS_FILE, TRAIN_EVENTS_FILE, TRAIN_EXAMPLES_DIR
from fashionrec.stages.train import count_example_targets
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.embeddings_file import read_embeddings, read_popularity_prior, write_embeddings
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import NotBlessedError, publish_model_repository
from fashionrec.app.runner import run_local
from fashionrec.app.client import RecommendClient
from fashionrec.serving.server import TritonServer

pytestmark = pytest.mark.e2e

SMALL = {"shop.num_customers": 2_000, "shop.num_products": 600, "train.epochs": 2}
CONFIG = dataset_config("synthetic", SMALL)  # the embedded shop's own settings, as the CLI runs it
K = 10


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("workspace")
    return run_local(str(workspace), CONFIG)


@pytest.fixture(scope="module")
def catalogue(run):
    return read_embeddings(str(run.artifact("export-embeddings", "embeddings") / EMBEDDINGS_FILE))


@pytest.fixture(scope="module")
def prior(run):
    return read_popularity_prior(str(run.artifact("export-embeddings", "embeddings") / EMBEDDINGS_FILE))


@pytest.fixture(scope="module")
def server(run):
    with TritonServer(run.model_repository, PipelineConfig().serving, http_port=0, grpc_port=0, metrics_port=0) as s:
        yield s


def _numpy_top_k(embeddings, rows, weights, k, prior):
    # recency pooling as trained: a weight halves per half_life_events newer events (history oldest first; 0: off)
    half_life = CONFIG.train.recency_half_life_events
    decay = 0.5 ** (np.arange(len(rows))[::-1] / half_life) if half_life > 0 else np.ones(len(rows))
    weights = np.asarray(weights) * decay
    vector = (weights[:, None] * embeddings[rows]).sum(axis=0) / np.sum(weights)
    dots = embeddings @ vector + prior
    order = np.lexsort((np.arange(len(dots)), -dots))[:k]
    return order, 1 / (1 + np.exp(-dots[order]))


def test_model_beats_popularity_and_is_published(run):
    evaluation = run.artifact("evaluate-model", "evaluation")
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["model"]["recall@20"] > 1.5 * metrics["popularity"]["recall@20"]
    assert json.loads((evaluation / "blessing.json").read_text())["blessed"] is True
    manifest = json.loads((run.model_repository / MANIFEST_FILE).read_text())
    assert manifest["latest_version"] == 1
    for model in ("recommend", "customer_vector", "rank_products"):
        assert (run.model_repository / model / "1").is_dir()
    # The publish task's Model artifact: the run -> served version lineage (fashionrec.repository.registry).
    published = json.loads((run.run_dir / "publish-model" / "executor_output.json").read_text())
    (artifact,) = published["artifacts"]["published_model"]["artifacts"]
    assert published["parameterValues"]["Output"] == 1
    assert artifact["uri"] == str(run.model_repository)
    assert artifact["metadata"] == {
        "repository_uri": str(run.model_repository), "version": 1, "blessed": True, "gate_metric": "recall@20",
        "metrics": {"recall@20": metrics["model"]["recall@20"], "ndcg@10": metrics["model"]["ndcg@10"]},
        "embedding_dim": CONFIG.train.embedding_dim, "num_products": manifest["versions"][0]["num_products"]}


def test_the_transform_counts_each_products_training_targets_as_its_examples_hold_them(run):
    transformed = run.artifact("transform-data", "transformed")
    counts = np.load(transformed / TARGET_COUNTS_FILE)
    np.testing.assert_array_equal(counts, count_example_targets(str(transformed), len(counts)))
    train = pd.read_parquet(run.artifact("ingest-data", "ingested") / TRAIN_EVENTS_FILE)
    assert counts.sum() == len(train) - train["customer_id"].nunique() > 0


def test_every_catalogue_product_has_an_embedding_including_new_ones(run, catalogue):
    product_ids, embeddings, is_new = catalogue
    ingested = run.artifact("ingest-data", "ingested")
    import pandas as pd

    products = pd.read_parquet(ingested / "catalogue.parquet")
    assert sorted(product_ids) == sorted(products["product_id"])
    assert is_new.sum() == products["is_new"].sum() > 0
    assert np.isfinite(embeddings).all()
    assert (np.linalg.norm(embeddings[is_new], axis=1) > 0).all()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_triton_recommendations_equal_numpy_on_the_exported_embeddings(run, catalogue, prior, server, protocol):
    product_ids, embeddings, _ = catalogue
    row = {pid: i for i, pid in enumerate(product_ids)}
    events = load_events(str(run.artifact("ingest-data", "ingested")))
    customers = events["customer_id"].drop_duplicates().iloc[:5]
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with RecommendClient(url, protocol) as client:
        for customer in customers:
            history = recent_history(events, customer, 20)
            got = client.recommend(history.product_ids, history.weights, K)
            rows, scores = _numpy_top_k(embeddings, [row[p] for p in history.product_ids], history.weights, K, prior)
            assert [r.product_id for r in got] == list(product_ids[rows])
            np.testing.assert_allclose([r.score for r in got], scores, rtol=1e-4)


def test_a_product_never_seen_in_training_can_be_recommended(catalogue, server):
    product_ids, embeddings, is_new = catalogue
    new_product = product_ids[np.flatnonzero(is_new)[0]]
    similar_warm = product_ids[np.argsort(-(embeddings @ embeddings[is_new][0]))][:3]
    with RecommendClient(server.grpc_url, "grpc") as client:
        by_itself = client.recommend([new_product], None, K)
        from_neighbours = client.recommend([p for p in similar_warm if p != new_product], None, 50)
    assert by_itself[0].product_id == new_product
    assert new_product in {r.product_id for r in from_neighbours}


def test_a_model_that_fails_the_gate_is_not_published(run, tmp_path):
    failing = dataset_config("synthetic", {**SMALL, "train.epochs": 1, "evaluate.min_gate_metric": 1.01})
    second = run_local(str(tmp_path), failing, model_repository=str(run.model_repository))
    blessing = json.loads((second.artifact("evaluate-model", "evaluation") / "blessing.json").read_text())
    assert blessing["blessed"] is False
    assert not (second.run_dir / "publish-model").exists()
    manifest = json.loads((run.model_repository / MANIFEST_FILE).read_text())
    assert [v["version"] for v in manifest["versions"]] == [1]
    assert not (run.model_repository / "recommend" / "2").exists()


def _evaluate(run, embeddings_dir, output_dir, repository, **overrides):
    config = PipelineConfig().with_overrides({f"evaluate.{k}": v for k, v in overrides.items()})
    return evaluate(str(run.artifact("ingest-data", "ingested")), str(run.artifact("transform-data", "transformed")),
                    str(embeddings_dir), str(output_dir), config.evaluate, model_repository=str(repository))


def _write_candidate(catalogue, folder, transform):
    product_ids, embeddings, is_new = catalogue
    write_embeddings(str(folder / EMBEDDINGS_FILE), product_ids, transform(embeddings), is_new)
    return folder


def test_degraded_candidate_is_rejected_and_the_published_version_stays(run, catalogue, tmp_path):
    shuffled = _write_candidate(catalogue, tmp_path, lambda e: np.random.default_rng(0).permutation(e))
    result = _evaluate(run, shuffled, tmp_path / "eval", run.model_repository)
    assert not result.blessed
    verdicts = {c["name"]: c["verdict"] for c in result.blessing["checks"]}
    assert verdicts["recall@20 vs published v1"] == "worse"
    with pytest.raises(NotBlessedError):
        publish_model_repository(str(shuffled / EMBEDDINGS_FILE), str(tmp_path / "eval" / "blessing.json"),
                                 str(run.model_repository), PipelineConfig().serving)
    assert json.loads((run.model_repository / MANIFEST_FILE).read_text())["latest_version"] == 1


def test_candidate_equal_to_the_published_model_follows_the_configured_policy(run, tmp_path):
    same = run.artifact("export-embeddings", "embeddings")
    blessed = _evaluate(run, same, tmp_path / "bless", run.model_repository)
    rejected = _evaluate(run, same, tmp_path / "reject", run.model_repository, equal_within_noise="reject")
    assert {c["verdict"] for c in blessed.blessing["checks"][2:]} == {"equal within noise"}
    assert blessed.blessed and not rejected.blessed


def test_better_candidate_is_published_over_a_weaker_one(run, catalogue, tmp_path):
    repository = tmp_path / "repository"
    noise = np.random.default_rng(1).normal(0, 1.5, catalogue[1].shape).astype(np.float32)
    weak = _write_candidate(catalogue, tmp_path / "weak", lambda e: e + noise)
    first = _evaluate(run, weak, tmp_path / "weak-eval", repository, min_lift_over_baseline=-1.0)
    assert first.blessed and first.blessing["checks"][-1]["verdict"] == "first run"
    publish_model_repository(str(weak / EMBEDDINGS_FILE), str(tmp_path / "weak-eval" / "blessing.json"),
                             str(repository), PipelineConfig().serving)
    # Overall comparison only: on the small cold-start slice the noisy weak model is no reference.
    better = _evaluate(run, run.artifact("export-embeddings", "embeddings"), tmp_path / "eval", repository,
                       gate_slices=[])
    assert [c["verdict"] for c in better.blessing["checks"][2:]] == ["better", "better"]
    published = publish_model_repository(str(run.artifact("export-embeddings", "embeddings") / EMBEDDINGS_FILE),
                                         str(tmp_path / "eval" / "blessing.json"), str(repository),
                                         PipelineConfig().serving)
    assert published.version == 2


def test_whole_pipeline_runs_on_real_movielens_100k(tmp_path):
    """With the future-set objective MovieLens-1M's settings choose (the embedded shop's run covers next-event)."""
    config = PipelineConfig().with_overrides({**FUTURE_SET_SETTINGS, "train.epochs": 10,
                                              "evaluate.min_lift_over_baseline": -1.0})
    ml = run_local(str(tmp_path), config, dataset="movielens-100k")
    summary = json.loads((ml.artifact("ingest-data", "ingested") / "summary.json").read_text())
    assert summary["event_rows"] == 100_000 and summary["quarantined"] == {}
    assert summary["train_events"] + summary["holdout_events"] == 100_000
    metrics = json.loads((ml.artifact("evaluate-model", "evaluation") / "metrics.json").read_text())
    # the standard protocol: customers with a training history and a holdout product they had not seen
    ingested = ml.artifact("ingest-data", "ingested")
    train, holdout = (pd.read_parquet(ingested / name) for name in (TRAIN_EVENTS_FILE, HOLDOUT_EVENTS_FILE))
    seen = set(zip(train["customer_id"], train["product_id"]))
    unseen = holdout[[pair not in seen for pair in zip(holdout["customer_id"], holdout["product_id"])]]
    evaluated = unseen["customer_id"][unseen["customer_id"].isin(set(train["customer_id"]))].nunique()
    assert 0 < metrics["model"]["recall@20"] < 1 and metrics["model"]["customers"] == evaluated > 50
    product_ids, embeddings, is_new = read_embeddings(str(ml.artifact("export-embeddings", "embeddings") / EMBEDDINGS_FILE))
    assert len(product_ids) == 1_682 and np.isfinite(embeddings).all()
    aggregation = json.loads((ml.artifact("export-embeddings", "embeddings") / AGGREGATION_FILE).read_text())
    assert (aggregation["pooling"], aggregation["window"]) == ("mean", config.transform.sequence_length - 1)
    assert json.loads((ml.model_repository / MANIFEST_FILE).read_text())["latest_version"] == 1
    transformed = ml.artifact("transform-data", "transformed")  # the future-set objective reads no next-event examples
    assert not list((transformed / TRAIN_EXAMPLES_DIR).glob("part*"))
    assert np.load(transformed / TARGET_COUNTS_FILE).sum() == len(train) - train["customer_id"].nunique()
