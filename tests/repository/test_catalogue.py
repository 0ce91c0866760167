"""How a catalogue update extends the served candidate sets (hand-checked; the update itself is drilled on a
real tritonserver in tests/serving/test_embed_products.py), and how the added products are kept in the
repository and read back along a chain of versions (local publishes, no server)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from fashionrec import storage
from fashionrec.artifacts import EMBEDDINGS_FILE
from fashionrec.config import ExportConfig, ServingConfig
from fashionrec.contract import content, context
from fashionrec.embeddings_file import write_embeddings
from fashionrec.repository.catalogue import (ADDITIONS_PREFIX, PRODUCT_COLUMNS, add_products, added_products, refresh_prior,
                                             sets_with_new_products)
from fashionrec.repository.manifest import read_manifest
from fashionrec.repository.served import served_version
from fashionrec.repository.publish import publish_model_repository


def test_new_products_join_new_in_and_their_category_set_when_the_version_has_category_sets():
    served = {"new_in": ["P9"], "category:dress": ["P1", "P2"], "sale": ["P2"]}
    updated = sets_with_new_products(served, ["N1", "N2", "N3"], ["dress", "boots", "dress"])
    assert updated == {"new_in": ["P9", "N1", "N2", "N3"], "category:dress": ["P1", "P2", "N1", "N3"],
                       "sale": ["P2"], "category:boots": ["N2"]}
    assert served == {"new_in": ["P9"], "category:dress": ["P1", "P2"], "sale": ["P2"]}  # the served ones untouched


def test_a_version_without_category_sets_gets_none_made_up():
    assert sets_with_new_products({"sale": ["P2"]}, ["N1"], ["dress"]) == {"sale": ["P2"], "new_in": ["N1"]}


# -- the added products kept in the repository, and read back along a chain of versions ----------------------

DIM = 8
WORDS = ["linen", "wool", "dress", "coat", "red", "blue"]


def _tower() -> content.ContentTower:
    """A small content tower in the export's format (random weights)."""
    rng = np.random.default_rng(1)
    features = {"format": 1, "max_tokens": 4, "oov_buckets": 1, "temperature": 0.2, "normalize": True,
                "gelu": "erf", "vocabularies": {"tokens": WORDS, "category": ["dress", "coat"], "colour": ["red", "blue"],
                                                "brand": ["acme"]},
                "price": {"boundaries": [20.0, 60.0], "mean": 3.5, "var": 0.6}}
    shapes = {"tokens": (len(WORDS) + 2, 4), "category": (3, 2), "colour": (3, 2), "brand": (2, 2),
              "price_bucket": (3, 2), "hidden_kernel": (13, 12), "hidden_bias": (12,), "output_kernel": (12, DIM),
              "output_bias": (DIM,)}
    return content.ContentTower(features, {n: rng.normal(size=s).astype(np.float32) for n, s in shapes.items()})


def _products(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"product_id": ids, "title": [f"linen dress {pid}" for pid in ids],
                         "category": "dress", "price": [25.0 + i for i in range(len(ids))], "colour": "red"})


def _publish_trained(folder: Path, repository: Path | str, ids: list[str], serving: ServingConfig = ServingConfig()) -> int:
    """A retrained version (the pipeline's publish: no catalogue update) of ``ids``, with a content tower."""
    folder.mkdir(parents=True, exist_ok=True)
    embeddings = np.random.default_rng(len(ids)).normal(size=(len(ids), DIM)).astype(np.float32)
    write_embeddings(str(folder / EMBEDDINGS_FILE), np.asarray(ids), embeddings, np.zeros(len(ids), bool),
                     np.zeros(len(ids), np.float32))
    (folder / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": []}))
    _tower().save(folder)
    return publish_model_repository(str(folder / EMBEDDINGS_FILE), str(folder / "blessing.json"), str(repository),
                                    serving).version


def test_added_products_are_kept_in_the_repository_and_read_back_along_the_chain(tmp_path: Path) -> None:
    repository, serving = tmp_path / "repo", ServingConfig()
    trained = _publish_trained(tmp_path / "v1", repository, ["P1", "P2", "P3"])
    assert added_products(str(repository), trained).empty
    first = add_products(str(repository), _products(["N1", "N2"]), serving)
    entry = read_manifest(str(repository))["versions"][-1]["catalogue_update"]
    kept = repository / entry["products_file"]  # relative to the repository, at its root: Triton ignores files there
    assert kept.parent == repository and kept.is_file()
    written = pd.read_parquet(kept)
    assert list(written.columns) == list(PRODUCT_COLUMNS) and list(written["product_id"]) == ["N1", "N2"]
    assert list(written["description"]) == ["", ""] and list(written["brand"]) == ["unknown", "unknown"]  # ingest's
    events = pd.DataFrame({"customer_id": ["C1", "C2"], "product_id": ["N1", "P1"], "event_type": "click",
                           "timestamp": "2026-12-01T10:00:00Z"})
    refreshed = refresh_prior(str(repository), events, serving, ExportConfig()).version  # no products of its own
    second = add_products(str(repository), _products(["N3"]), serving)
    assert second.base_version == refreshed and first.version < refreshed < second.version
    chain = added_products(str(repository), second.version)
    assert list(chain["product_id"]) == ["N1", "N2", "N3"]  # oldest first, through the prior refresh
    assert list(chain.columns) == list(PRODUCT_COLUMNS) and chain["price"].tolist() == [25.0, 26.0, 25.0]
    assert list(added_products(str(repository), first.version)["product_id"]) == ["N1", "N2"]
    assert list(added_products(str(repository), refreshed)["product_id"]) == ["N1", "N2"]
    # a retrained version ends the chain: its catalogue is its training data's
    retrained = _publish_trained(tmp_path / "v5", repository, ["P1", "P2", "P3", "N1", "N2", "N3"])
    assert added_products(str(repository), retrained).empty
    third = add_products(str(repository), _products(["N4"]), serving)
    assert list(added_products(str(repository), third.version)["product_id"]) == ["N4"]
    assert added_products(str(repository), 99).empty  # an unknown version: nothing


def test_added_products_are_kept_and_read_back_on_gcs(tmp_path: Path, gcs_emulator: str) -> None:
    """The same through fashionrec.storage on a gs:// repository (the GCS emulator): a products file at the root
    is a plain object the next publish's version scan skips."""
    repository = f"{gcs_emulator}/catalogue-additions"
    _publish_trained(tmp_path / "v1", repository, ["P1", "P2"])
    first = add_products(repository, _products(["N1"]), ServingConfig())
    second = add_products(repository, _products(["N2", "N3"]), ServingConfig())
    assert (first.version, second.version) == (2, 3)
    assert list(added_products(repository, second.version)["product_id"]) == ["N1", "N2", "N3"]
    names = storage.list_dir(repository)
    assert sum(name.startswith(ADDITIONS_PREFIX) for name in names) == 2


def test_a_debiased_prior_refresh_counts_each_event_by_its_inverse_examination(tmp_path: Path) -> None:
    repository, serving = tmp_path / "repo", ServingConfig()
    _publish_trained(tmp_path / "v1", repository, ["P1", "P2"])
    events = pd.DataFrame({"customer_id": ["C1", "C2", "C3"], "product_id": ["P1", "P2", "P2"], "event_type": "click",
                           "timestamp": "2026-12-01T10:00:00Z", "examination": ["0.25", "", ""]})
    export = ExportConfig(popularity_prior_weight=1.0)
    debiased = refresh_prior(str(repository), events, serving, export, max_inverse_examination=10.0).version
    as_logged = refresh_prior(str(repository), events, serving, export).version
    # P1's click was shown where a quarter of shoppers look: it counts 4 clicks; P2's two, position unknown, 2.
    np.testing.assert_allclose(served_version(str(repository), serving, debiased).prior, np.log1p([4 / 3, 2 / 3]),
                               rtol=1e-6)
    np.testing.assert_allclose(served_version(str(repository), serving, as_logged).prior, np.log1p([2 / 3, 4 / 3]),
                               rtol=1e-6)


def test_catalogue_updates_keep_the_served_versions_context_tables(tmp_path: Path) -> None:
    """A catalogue addition or prior refresh changes products, not how context moves a customer."""
    repository, serving = tmp_path / "repo", ServingConfig()
    region = np.random.default_rng(4).normal(size=(3, DIM)).astype(np.float32)
    region[0] = 0.0
    tables = context.ContextTables({"region": ("GB", "SE")}, {"region": region})
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / context.CONTEXT_FILE).write_text(json.dumps(tables.to_json()))
    _publish_trained(tmp_path / "v1", repository, ["P1", "P2"])
    added = add_products(str(repository), _products(["N1"]), serving).version
    events = pd.DataFrame({"customer_id": ["C1"], "product_id": ["N1"], "event_type": "click",
                           "timestamp": "2026-12-01T10:00:00Z"})
    refreshed = refresh_prior(str(repository), events, serving, ExportConfig()).version
    for version in (added, refreshed):
        kept = context.load(repository / serving.customer_model_name / str(version))
        assert kept.vocabularies == tables.vocabularies
        np.testing.assert_array_equal(kept.tables["region"], region)


def test_catalogue_updates_serve_as_the_version_they_update_was_published_to_serve(tmp_path: Path) -> None:
    """The daily prior refresh and `catalogue add` run with the CLI's default ServingConfig; a version the
    pipeline published for GPU instances (the GPU overlay) with an fp16 table must not come back as CPU."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repository, defaults = tmp_path / "repo", ServingConfig()
    published_for = ServingConfig(instance_kind="KIND_GPU", table_dtype="float16", ranking_instance_count=2,
                                  max_queue_delay_us=300, max_top_k=500)
    _publish_trained(tmp_path / "v1", repository, ["P1", "P2"], published_for)
    added = add_products(str(repository), _products(["N1"]), defaults).version
    events = pd.DataFrame({"customer_id": ["C1"], "product_id": ["N1"], "event_type": "click",
                           "timestamp": "2026-12-01T10:00:00Z"})
    refreshed = refresh_prior(str(repository), events, defaults, ExportConfig()).version
    entries = {entry["version"]: entry for entry in read_manifest(str(repository))["versions"]}
    for version in (1, added, refreshed):
        assert entries[version]["serving"]["instance_kind"] == "KIND_GPU"
        ranking = text_format.Parse(entries[version]["configs"][defaults.ranking_model_name],
                                    model_config_pb2.ModelConfig())
        assert [(group.kind, group.count) for group in ranking.instance_group] == [
            (model_config_pb2.ModelInstanceGroup.KIND_GPU, 2)]
        assert ranking.dynamic_batching.max_queue_delay_microseconds == 300
        parameters = {key: value.string_value for key, value in ranking.parameters.items()}
        assert (parameters["table_dtype"], parameters["max_top_k"]) == ("float16", "500")
