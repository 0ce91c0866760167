"""Publishing embeddings as a versioned Triton model repository (offline: no server here)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from fashionrec.config import EventWeights, ServingConfig
from fashionrec.repository.publish import (
    MANIFEST_FILE,
    NotBlessedError,
    default_templates_dir,
    publish_model_repository,
    render_configs,
)
from fashionrec.contract import content, context, device, layout, ops, pooling, scoring, validation, wire
from fashionrec.repository import versions

SERVING = ServingConfig()
PYTHON_MODELS = (SERVING.customer_model_name, SERVING.ranking_model_name, SERVING.blend_model_name)
ENSEMBLES = (SERVING.model_name, SERVING.rerank_model_name, SERVING.similar_model_name)
ALL_MODELS = (*PYTHON_MODELS, *ENSEMBLES)
EMBED = SERVING.embed_model_name


def write_embeddings(path: Path, embeddings: np.ndarray, ids: list[str] | None = None,
                     list_type: pa.DataType | None = None) -> str:
    """The export stage's Parquet layout: product_id, embedding (list<float32>), is_new."""
    ids = ids if ids is not None else [f"P{i:06d}" for i in range(len(embeddings))]
    column = pa.array([row.tolist() for row in embeddings], type=list_type or pa.list_(pa.float32()))
    is_new = [i % 3 == 0 for i in range(len(ids))]
    pq.write_table(pa.table({"product_id": ids, "embedding": column, "is_new": is_new}), path)
    return str(path)


def write_blessing(path: Path, blessed: bool, reasons: list[str] = ()) -> str:
    path.write_text(json.dumps({"blessed": blessed, "reasons": list(reasons), "metrics": {"recall@20": 0.3}}))
    return str(path)


@pytest.fixture
def embeddings() -> np.ndarray:
    return np.random.default_rng(5).normal(size=(7, 4)).astype(np.float32)


@pytest.fixture
def inputs(tmp_path: Path, embeddings: np.ndarray) -> tuple[str, str]:
    return write_embeddings(tmp_path / "emb.parquet", embeddings), write_blessing(tmp_path / "ok.json", True)


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root with its content (to prove a refused publish changed nothing)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _assert_contract_copied(folder: Path) -> None:
    """The version folder holds the serving contract under its own import path, byte for byte."""
    copied = sorted(p.relative_to(folder).as_posix() for p in (folder / "fashionrec").rglob("*.py"))
    assert copied == ["fashionrec/__init__.py", "fashionrec/contract/__init__.py", "fashionrec/contract/content.py",
                      "fashionrec/contract/context.py", "fashionrec/contract/device.py", "fashionrec/contract/layout.py",
                      "fashionrec/contract/ops.py", "fashionrec/contract/pooling.py", "fashionrec/contract/scoring.py",
                      "fashionrec/contract/validation.py", "fashionrec/contract/wire.py"]
    for module in (ops, pooling, scoring, device, content, context, layout, validation, wire):
        assert (folder / "fashionrec" / "contract" / Path(module.__file__).name).read_bytes() == \
            Path(module.__file__).read_bytes()


def test_layout_of_a_published_version(tmp_path: Path, inputs: tuple[str, str], embeddings: np.ndarray) -> None:
    repo = tmp_path / "repo"
    published = publish_model_repository(*inputs, str(repo), SERVING)
    assert (published.version, published.path, published.num_products, published.embedding_dim) == (1, str(repo), 7, 4)
    templates = default_templates_dir()
    for name in PYTHON_MODELS:
        folder = repo / name / "1"
        assert (folder / "model.py").read_text() == (templates / name / "model.py").read_text()
        _assert_contract_copied(folder)
        np.testing.assert_array_equal(np.load(folder / layout.EMBEDDINGS_FILE), embeddings)
        assert (folder / layout.PRODUCT_IDS_FILE).read_text().splitlines() == [f"P{i:06d}" for i in range(7)]
    assert all(list((repo / name / "1").iterdir()) == [] for name in ENSEMBLES)
    for name in (SERVING.customer_model_name, SERVING.ranking_model_name):  # both pool histories
        aggregation = json.loads((repo / name / "1" / layout.AGGREGATION_FILE).read_text())
        assert aggregation == {"pooling": "weighted", "half_life_days": 30.0, "half_life_events": 0.0,
                               "event_weights": EventWeights().as_dict(), "window": 0}
    sets = json.loads((repo / SERVING.ranking_model_name / "1" / layout.CANDIDATE_SETS_FILE).read_text())
    assert sets == {"new_in": ["P000000", "P000003", "P000006"]}
    assert not [p for p in repo.rglob("*") if p.name.startswith(".staging-")]


def test_rendered_configs_parse_as_triton_model_configs(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    configs = {name: parse(repo / name / "config.pbtxt") for name in ALL_MODELS}
    customer, ranking, blend, recommend, rerank, similar = (configs[name] for name in ALL_MODELS)
    assert [c.name for c in configs.values()] == list(ALL_MODELS)
    assert customer.backend == ranking.backend == blend.backend == "python"
    assert list(customer.output[0].dims) == [4] and list(ranking.input[0].dims) == [4]
    assert all(i.allow_ragged_batch for i in customer.input if list(i.dims) == [-1])
    assert {i.name for i in customer.input if not i.optional} == {"HISTORY_PRODUCT_IDS"}
    assert {i.name for i in ranking.input if not i.optional} == set()  # CUSTOMER_VECTOR, or a history to pool
    assert {i.name for i in customer.input} < {i.name for i in ranking.input}  # rank_products takes all it pools
    assert all(c.max_batch_size == SERVING.max_batch_size for c in configs.values())
    assert ranking.dynamic_batching.max_queue_delay_microseconds == SERVING.max_queue_delay_us
    assert ranking.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert ranking.parameters["max_top_k"].string_value == str(SERVING.max_top_k)
    assert ranking.parameters["table_dtype"].string_value == SERVING.table_dtype
    assert blend.parameters["default_alpha"].string_value == str(SERVING.similar_alpha)
    for config in (customer, ranking):
        assert config.parameters["max_history_length"].string_value == str(SERVING.max_history_length)
    steps = {name: [s.model_name for s in configs[name].ensemble_scheduling.step] for name in ENSEMBLES}
    assert steps == {SERVING.model_name: [SERVING.ranking_model_name],  # it pools the history itself
                     SERVING.rerank_model_name: [SERVING.ranking_model_name],
                     SERVING.similar_model_name: [SERVING.customer_model_name, SERVING.blend_model_name,
                                                  SERVING.ranking_model_name]}
    assert all(configs[name].platform == "ensemble" for name in ENSEMBLES)
    assert {i.name for i in recommend.input if not i.optional} == {"HISTORY_PRODUCT_IDS", "TOP_K"}
    assert {i.name for i in rerank.input if not i.optional} == {"HISTORY_PRODUCT_IDS", "CANDIDATE_PRODUCT_IDS"}
    assert {i.name for i in similar.input if not i.optional} == {"HISTORY_PRODUCT_IDS", "HERO_PRODUCT_ID", "TOP_K"}
    assert all({o.name for o in configs[name].output} == {"PRODUCT_IDS", "SCORES"} for name in ENSEMBLES)
    # EXCLUDE_SEEN: an optional flag that reaches rank_products with the history it excludes
    for config in (ranking, recommend, similar):
        flag = next(i for i in config.input if i.name == "EXCLUDE_SEEN")
        assert flag.optional and flag.data_type == model_config_pb2.TYPE_BOOL and list(flag.dims) == [1]
    for ensemble in (recommend, similar):
        ranking_step = ensemble.ensemble_scheduling.step[-1]
        assert ranking_step.model_name == SERVING.ranking_model_name
        assert {"EXCLUDE_SEEN", "HISTORY_PRODUCT_IDS"} <= set(ranking_step.input_map.values())
    assert "EXCLUDE_SEEN" not in {i.name for i in rerank.input}


def test_versions_are_pinned_and_python_models_keep_the_previous_one(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    for expected in (1, 2, 3):
        assert publish_model_repository(*inputs, str(repo), SERVING).version == expected
    configs = {name: parse(repo / name / "config.pbtxt") for name in ALL_MODELS}
    for name in PYTHON_MODELS:
        assert list(configs[name].version_policy.specific.versions) == [2, 3]
    for name in ENSEMBLES:
        assert list(configs[name].version_policy.specific.versions) == [3]
        assert {step.model_version for step in configs[name].ensemble_scheduling.step} == {3}
    versions.rollback(str(repo), SERVING, to_version=1)
    configs = {name: parse(repo / name / "config.pbtxt") for name in ALL_MODELS}
    assert list(configs[SERVING.ranking_model_name].version_policy.specific.versions) == [1, 3]
    assert {step.model_version for step in configs[SERVING.model_name].ensemble_scheduling.step} == {1}
    manifest = json.loads((repo / MANIFEST_FILE).read_text())
    assert (manifest["latest_version"], manifest["serving_version"], manifest["serving_history"]) == (3, 1, [1, 2, 3, 1])


def test_candidate_sets_and_aggregation_are_checked_before_writing(tmp_path: Path, inputs: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="unknown: \\['NOPE'\\]"):
        publish_model_repository(*inputs, str(tmp_path / "repo"), SERVING, candidate_sets={"sale": ["P000001", "NOPE"]})
    (Path(inputs[0]).parent / layout.AGGREGATION_FILE).write_text(json.dumps({"pooling": "max"}))
    with pytest.raises(ValueError, match="pooling must be one of"):
        publish_model_repository(*inputs, str(tmp_path / "repo"), SERVING)
    for window in (-1, 2.5):
        (Path(inputs[0]).parent / layout.AGGREGATION_FILE).write_text(json.dumps({"pooling": "mean", "window": window}))
        with pytest.raises(ValueError, match="window must be 0"):
            publish_model_repository(*inputs, str(tmp_path / "repo"), SERVING)
    assert not (tmp_path / "repo").exists()


def test_every_template_renders_with_custom_names(tmp_path: Path) -> None:
    serving = ServingConfig(model_name="rec", customer_model_name="cv", ranking_model_name="rank",
                            rerank_model_name="rr", similar_model_name="sim", blend_model_name="mix",
                            embed_model_name="emb")
    configs = render_configs(serving, 8, default_templates_dir())
    assert set(configs) == {"rec", "cv", "rank", "rr", "sim", "mix", "emb"}
    for name, text in configs.items():
        assert "$" not in text
        assert text_format.Parse(text, model_config_pb2.ModelConfig()).name == name
    steps = text_format.Parse(configs["rec"], model_config_pb2.ModelConfig()).ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["rank"]
    steps = text_format.Parse(configs["sim"], model_config_pb2.ModelConfig()).ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["cv", "mix", "rank"]


def test_versions_increment_and_the_manifest_records_them(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    assert publish_model_repository(*inputs, str(repo), SERVING).version == 1
    assert publish_model_repository(*inputs, str(repo), SERVING, metadata={"recall@20": 0.31}).version == 2
    assert publish_model_repository(*inputs, str(repo), SERVING, version=7).version == 7
    assert publish_model_repository(*inputs, str(repo), SERVING).version == 8
    for name in ALL_MODELS:
        assert sorted(int(p.name) for p in (repo / name).iterdir() if p.is_dir()) == [1, 2, 7, 8]
    manifest = json.loads((repo / MANIFEST_FILE).read_text())
    assert manifest["latest_version"] == 8
    assert [v["version"] for v in manifest["versions"]] == [1, 2, 7, 8]
    second = manifest["versions"][1]
    assert second["metadata"] == {"recall@20": 0.31}
    assert (second["num_products"], second["num_new_products"], second["embedding_dim"]) == (7, 3, 4)
    assert second["blessing"]["blessed"] is True and second["created_at"].endswith("+00:00")


def test_a_used_version_is_never_overwritten(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    before = tree(repo)
    for bad in (1, 0):
        with pytest.raises(ValueError, match="not a new positive version"):
            publish_model_repository(*inputs, str(repo), SERVING, version=bad)
    assert tree(repo) == before


def test_a_model_that_failed_the_gate_is_never_published(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    before = tree(repo)
    refused = write_blessing(tmp_path / "no.json", False, ["recall@20 0.01 < popularity 0.05"])
    with pytest.raises(NotBlessedError, match=re.escape("recall@20 0.01 < popularity")) as caught:
        publish_model_repository(inputs[0], refused, str(repo), SERVING)
    assert caught.value.reasons == ["recall@20 0.01 < popularity 0.05"]
    assert tree(repo) == before
    with pytest.raises(NotBlessedError):
        publish_model_repository(inputs[0], refused, str(tmp_path / "fresh"), SERVING)
    assert not (tmp_path / "fresh").exists()


def test_fixed_size_list_embeddings_are_accepted(tmp_path: Path, embeddings: np.ndarray) -> None:
    path = write_embeddings(tmp_path / "e.parquet", embeddings, list_type=pa.list_(pa.float32(), 4))
    repo = tmp_path / "repo"
    publish_model_repository(path, write_blessing(tmp_path / "b.json", True), str(repo), SERVING)
    np.testing.assert_array_equal(np.load(repo / SERVING.ranking_model_name / "1" / layout.EMBEDDINGS_FILE), embeddings)


@pytest.mark.parametrize(
    "ids, values, message",
    [
        (["A", "A"], [[1.0, 2.0], [3.0, 4.0]], "unique"),
        (["A", "B"], [[1.0, 2.0], [3.0]], "common, positive length"),
        (["A", "B"], [[1.0, float("nan")], [3.0, 4.0]], "finite"),
        (["A", "B\nC"], [[1.0, 2.0], [3.0, 4.0]], "single-line"),
    ],
    ids=["duplicate-ids", "ragged", "nan", "newline-in-id"],
)
def test_bad_catalogues_are_refused_before_writing(tmp_path: Path, ids: list[str], values: list[list[float]],
                                                   message: str) -> None:
    path = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"product_id": ids, "embedding": pa.array(values, pa.list_(pa.float32()))}), path)
    with pytest.raises(ValueError, match=message):
        publish_model_repository(str(path), write_blessing(tmp_path / "b.json", True), str(tmp_path / "repo"), SERVING)
    assert not (tmp_path / "repo").exists()


def test_publishing_to_gcs_uploads_versions_then_the_manifest(
    tmp_path: Path, inputs: tuple[str, str], embeddings: np.ndarray, gcs_emulator: str
) -> None:
    from fashionrec import storage
    from fashionrec.repository.served import served_version

    repository = f"{gcs_emulator}/publish-test/repo"
    assert served_version(repository, SERVING) is None
    first = publish_model_repository(*inputs, repository, SERVING)
    second = publish_model_repository(*inputs, repository, SERVING)
    assert (first.version, second.version) == (1, 2)
    assert storage.read_json(f"{repository}/{MANIFEST_FILE}")["latest_version"] == 2
    local = storage.download_tree(repository, str(tmp_path / "downloaded"))
    for model in ALL_MODELS:
        assert {"1", "2", "config.pbtxt"} <= set(p.name for p in (Path(local) / model).iterdir())
    np.testing.assert_array_equal(
        np.load(Path(local) / SERVING.ranking_model_name / "2" / layout.EMBEDDINGS_FILE), embeddings)
    served = served_version(repository, SERVING)
    assert served is not None and served.version == 2
    np.testing.assert_array_equal(served.embeddings, embeddings)


def test_an_unblessed_model_never_reaches_gcs(tmp_path: Path, embeddings: np.ndarray, gcs_emulator: str) -> None:
    from fashionrec import storage

    refused = (write_embeddings(tmp_path / "e.parquet", embeddings), write_blessing(tmp_path / "b.json", False, ["x"]))
    repository = f"{gcs_emulator}/publish-test/refused"
    with pytest.raises(NotBlessedError):
        publish_model_repository(*refused, repository, SERVING)
    assert not storage.exists(repository)


# ---- the content tower (embed_products) ------------------------------------------------------------

def content_tower(dim: int, oov_buckets: int = 1) -> tuple[dict, dict[str, np.ndarray]]:
    """A tiny content tower (features, weights) in the export's format, random weights."""
    rng = np.random.default_rng(3)
    features = {"format": 1, "max_tokens": 4, "oov_buckets": oov_buckets, "temperature": 0.5, "normalize": True,
                "gelu": "erf", "vocabularies": {"tokens": ["red", "dress"], "category": ["dresses"],
                                                "colour": ["red"], "brand": ["acme"]},
                "price": {"boundaries": [10.0, 50.0], "mean": 3.0, "var": 1.0}}
    shapes = {"tokens": (4, 3), "category": (2, 2), "colour": (2, 2), "brand": (2, 2), "price_bucket": (3, 2),
              "hidden_kernel": (12, 5), "hidden_bias": (5,), "output_kernel": (5, dim), "output_bias": (dim,)}
    return features, {name: rng.normal(size=shape).astype(np.float32) for name, shape in shapes.items()}


def write_content_tower(folder: Path, dim: int, oov_buckets: int = 1) -> None:
    features, weights = content_tower(dim, oov_buckets)
    (folder / content.FEATURES_FILE).write_text(json.dumps(features))
    np.savez(folder / content.WEIGHTS_FILE, **weights)


def test_embed_products_gets_the_content_tower_and_no_catalogue(tmp_path: Path, inputs: tuple[str, str]) -> None:
    write_content_tower(Path(inputs[0]).parent, dim=4)
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    folder = repo / EMBED / "1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["model.py", "fashionrec", content.FEATURES_FILE, content.WEIGHTS_FILE])
    _assert_contract_copied(folder)
    tower = content.ContentTower.load(folder)
    product = content.ProductContent("Red DRESS", "dresses", 20.0)
    np.testing.assert_array_equal(tower.embed([product]), content.ContentTower(*content_tower(4)).embed([product]))
    config = parse(repo / EMBED / "config.pbtxt")
    assert config.backend == "python" and list(config.output[0].dims) == [4]
    assert {i.name for i in config.input if not i.optional} == {"TITLE", "CATEGORY", "PRICE"}
    assert list(config.version_policy.specific.versions) == [1]
    assert json.loads((repo / MANIFEST_FILE).read_text())["versions"][0]["content_tower"] is True


def test_an_export_without_content_tower_still_publishes_embed_products(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    assert sorted(p.name for p in (repo / EMBED / "1").iterdir()) == sorted(["model.py", "fashionrec"])
    assert json.loads((repo / MANIFEST_FILE).read_text())["versions"][0]["content_tower"] is False


@pytest.mark.parametrize("dim, oov_buckets, message", [
    (5, 1, "gives 5-d embeddings, the catalogue has 4"),
    (4, 2, "embed_products needs TransformConfig.vocab_oov_buckets=1"),
])
def test_a_content_tower_that_does_not_fit_is_refused_before_writing(
        tmp_path: Path, inputs: tuple[str, str], dim: int, oov_buckets: int, message: str) -> None:
    write_content_tower(Path(inputs[0]).parent, dim, oov_buckets)
    with pytest.raises(ValueError, match=message):
        publish_model_repository(*inputs, str(tmp_path / "repo"), SERVING)
    assert not (tmp_path / "repo").exists()


def test_embed_products_is_pinned_like_the_python_models_and_survives_old_versions(
        tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    for _ in range(3):
        publish_model_repository(*inputs, str(repo), SERVING)
    assert list(parse(repo / EMBED / "config.pbtxt").version_policy.specific.versions) == [2, 3]
    # a version published before embed_products existed: rolling back to it keeps embed_products' pin
    manifest = json.loads((repo / MANIFEST_FILE).read_text())
    del manifest["versions"][0]["configs"][EMBED]
    (repo / MANIFEST_FILE).write_text(json.dumps(manifest))
    shutil.rmtree(repo / EMBED / "1")
    versions.rollback(str(repo), SERVING, to_version=1)
    assert list(parse(repo / EMBED / "config.pbtxt").version_policy.specific.versions) == [2, 3]
    assert {s.model_version for s in parse(repo / SERVING.model_name / "config.pbtxt").ensemble_scheduling.step} == {1}


# ---- the context tables (customer_vector) -----------------------------------------------------------

CONTEXT_INPUTS = {"CONTEXT_DEVICE": model_config_pb2.TYPE_STRING, "CONTEXT_REGION": model_config_pb2.TYPE_STRING,
                  "CONTEXT_HOUR": model_config_pb2.TYPE_INT32, "CONTEXT_WEEKDAY": model_config_pb2.TYPE_INT32}


def context_tables(dim: int) -> context.ContextTables:
    """Device and hour tables of width ``dim``, row 0 (unknown) zeros, the others random."""
    rng = np.random.default_rng(11)
    device, hour = rng.normal(size=(3, dim)).astype(np.float32), rng.normal(size=(25, dim)).astype(np.float32)
    device[0] = hour[0] = 0.0
    return context.ContextTables({"device": ("mobile", "desktop")}, {"device": device, "hour": hour})


def test_the_context_tables_are_copied_to_the_models_that_pool_only(tmp_path: Path, inputs: tuple[str, str]) -> None:
    exported = Path(inputs[0]).parent / context.CONTEXT_FILE
    exported.write_text(json.dumps(context_tables(4).to_json()))
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    pooling_models = {SERVING.customer_model_name, SERVING.ranking_model_name}
    for name in pooling_models:
        assert (repo / name / "1" / context.CONTEXT_FILE).read_bytes() == exported.read_bytes()
        loaded = context.load(repo / name / "1")
        np.testing.assert_array_equal(loaded.tables["hour"], context_tables(4).tables["hour"])
    assert not [p for p in repo.rglob(context.CONTEXT_FILE) if p.parent.parent.name not in pooling_models]
    exported.unlink()
    publish_model_repository(*inputs, str(repo), SERVING)  # an export without context: none published
    assert not list(repo.glob(f"*/2/{context.CONTEXT_FILE}"))


def test_every_customer_touchpoint_takes_the_context_inputs(tmp_path: Path, inputs: tuple[str, str]) -> None:
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    for name in (SERVING.customer_model_name, SERVING.ranking_model_name, *ENSEMBLES):
        config = parse(repo / name / "config.pbtxt")
        declared = {i.name: i for i in config.input if i.name in CONTEXT_INPUTS}
        assert {n: i.data_type for n, i in declared.items()} == CONTEXT_INPUTS
        assert all(i.optional and list(i.dims) == [1] for i in declared.values())
        if config.platform == "ensemble":  # the step that pools: customer_vector, or rank_products alone
            pooling_step = config.ensemble_scheduling.step[0]
            assert pooling_step.model_name in (SERVING.customer_model_name, SERVING.ranking_model_name)
            assert {key: value for key, value in pooling_step.input_map.items() if key in CONTEXT_INPUTS} == \
                {n: n for n in CONTEXT_INPUTS}


BAD_CONTEXT = {  # name: (context.json text, what the refusal says)
    "not JSON": ("{tables", "not a context table file"),
    "no tables": (json.dumps({"vocabularies": {}}), "not a context table file"),
    "not an object": ("[1, 2]", "not a context table file"),
    "unknown row not zeros": (json.dumps({"tables": {"weekday": np.ones((8, 4)).tolist()}}), "row 0"),
    "a row short": (json.dumps({"tables": {"hour": np.zeros((24, 4)).tolist()}}), "expected"),
    "not finite": (json.dumps({"tables": {"weekday": [[0.0] * 4] + [[float("nan")] * 4] * 7}}), "finite"),
    "wrong width": (json.dumps(context_tables(5).to_json()), "are not 4 wide"),
}


@pytest.mark.parametrize("fault", sorted(BAD_CONTEXT))
def test_bad_context_tables_are_refused_before_writing(tmp_path: Path, inputs: tuple[str, str], fault: str) -> None:
    repo = tmp_path / "repo"
    publish_model_repository(*inputs, str(repo), SERVING)
    before = tree(repo)
    text, message = BAD_CONTEXT[fault]
    (Path(inputs[0]).parent / context.CONTEXT_FILE).write_text(text)
    with pytest.raises(ValueError, match=rf"{context.CONTEXT_FILE}: .*{message}"):
        publish_model_repository(*inputs, str(repo), SERVING)
    assert tree(repo) == before
    with pytest.raises(ValueError, match=message):
        publish_model_repository(*inputs, str(tmp_path / "fresh"), SERVING)
    assert not (tmp_path / "fresh").exists()
