"""Everything on gs://, against a real gcp-storage-emulator: raw data in, artifacts and Triton repository out."""

import json
from pathlib import Path

import numpy as np
import pytest

from fashionrec import storage
from fashionrec.config import PipelineConfig
from fashionrec.datasets.synthetic import generate_shop, write_shop
from fashionrec.evaluation.evaluate import evaluate
from fashionrec.artifacts import BLESSING_FILE
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.embeddings_file import read_embeddings, read_popularity_prior
from fashionrec.stages.export import export_embeddings
from fashionrec.stages.ingest import ingest
from fashionrec.repository.manifest import MANIFEST_FILE
from fashionrec.repository.publish import publish_model_repository
from fashionrec.app.runner import run_local
from fashionrec.app.client import RecommendClient
from fashionrec.serving.server import TritonServer
from fashionrec.stages.train import train
from fashionrec.stages.transform import transform

pytestmark = pytest.mark.e2e

CONFIG = PipelineConfig().with_overrides({"shop.num_customers": 2_000, "shop.num_products": 600, "train.epochs": 2})


@pytest.fixture(scope="module")
def raw_on_gcs(gcs_emulator, tmp_path_factory):
    local = tmp_path_factory.mktemp("raw")
    write_shop(generate_shop(CONFIG.shop), str(local))
    uri = f"{gcs_emulator}/e2e/raw"
    storage.copy_tree(str(local), uri)
    return uri


def test_every_stage_reads_and_writes_gcs(raw_on_gcs, gcs_emulator):
    out = f"{gcs_emulator}/e2e/stages"
    ingest(f"{raw_on_gcs}/catalogue.csv", f"{raw_on_gcs}/events.csv", f"{out}/ingested", CONFIG.ingest)
    transform(f"{out}/ingested", f"{out}/transformed", CONFIG.transform)
    summary = train(f"{out}/transformed", f"{out}/model", CONFIG.train, CONFIG.transform)
    assert len(summary.epoch_seconds) == CONFIG.train.epochs and 0 < sum(summary.epoch_seconds) <= summary.seconds
    export_embeddings(f"{out}/ingested", f"{out}/transformed", f"{out}/model", f"{out}/embeddings")
    result = evaluate(f"{out}/ingested", f"{out}/transformed", f"{out}/embeddings", f"{out}/evaluation",
                      CONFIG.evaluate, model_repository=f"{out}/repository")
    assert result.blessed
    published = publish_model_repository(f"{out}/embeddings/{EMBEDDINGS_FILE}", f"{out}/evaluation/{BLESSING_FILE}",
                                         f"{out}/repository", CONFIG.serving)
    assert published.version == 1
    for folder in ("ingested", "transformed/transform_fn", "transformed/train_examples", "model", "embeddings",
                   "evaluation", "repository/rank_products/1"):
        assert storage.list_dir(f"{out}/{folder}"), folder
    assert storage.exists(f"{out}/repository/recommend/1")  # the ensemble's (empty) version folder
    assert storage.read_json(f"{out}/repository/{MANIFEST_FILE}")["latest_version"] == 1


def test_pipeline_reads_raw_data_from_gcs_and_publishes_there_then_triton_serves_it(
    raw_on_gcs, gcs_emulator, tmp_path
):
    repository = f"{gcs_emulator}/e2e/pipeline-repository"
    run = run_local(str(tmp_path / "workspace"), CONFIG, model_repository=repository, dataset="canonical",
                    data_dir=raw_on_gcs)
    blessing = json.loads((run.artifact("evaluate-model", "evaluation") / "blessing.json").read_text())
    assert blessing["blessed"]
    assert storage.read_json(f"{repository}/{MANIFEST_FILE}")["latest_version"] == 1
    local_repository = storage.download_tree(repository, str(tmp_path / "repository"))
    exported = str(run.artifact("export-embeddings", "embeddings") / EMBEDDINGS_FILE)
    product_ids, embeddings, _ = read_embeddings(exported)
    prior = read_popularity_prior(exported)
    assert prior.any()  # published with the model, and served: it enters the ranking below
    history = list(product_ids[[3, 5, 8]])
    with TritonServer(Path(local_repository), CONFIG.serving, http_port=0, grpc_port=0, metrics_port=0) as server:
        with RecommendClient(server.grpc_url, "grpc") as client:
            got = client.recommend(history, None, 5)
    decay = 0.5 ** (np.arange(3)[::-1] / CONFIG.train.recency_half_life_events)  # newer events weigh more
    vector = np.average(embeddings[[3, 5, 8]], axis=0, weights=decay)
    expected = np.lexsort((np.arange(len(embeddings)), -(embeddings @ vector + prior)))[:5]
    assert [r.product_id for r in got] == list(product_ids[expected])
