import pytest
import yaml
from click.testing import CliRunner

from fashionrec.app.cli import build_config, main
from fashionrec.config import COMPONENT_IMAGE, PipelineConfig


def test_compile_writes_a_pipeline_whose_every_task_runs_the_component_image(tmp_path):
    output = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(main, ["pipeline", "compile", "--output", str(output)])
    assert result.exit_code == 0, result.output
    spec = yaml.safe_load(output.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == 7
    assert {e["container"]["image"] for e in executors.values()} == {COMPONENT_IMAGE}
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {
        "model_repository", "dataset", "data_dir", *(f"{name}_config" for name in PipelineConfig().sections())}
    # publishing sits inside the gate's condition
    condition = next(t for t in spec["root"]["dag"]["tasks"].values() if "triggerPolicy" in t)
    assert "evaluate-model" in condition["triggerPolicy"]["condition"]


def test_set_values_are_read_as_their_fields_types():
    config = build_config("small", ("train.epochs=5", "ingest.split_time=2026-08-01T00:00:00",
                                    "evaluate.top_k=[10, 20, 50]", "train.pooling=mean"))
    assert config.train.epochs == 5
    assert config.shop.num_products == 600  # from --size small
    assert config.ingest.split_time == "2026-08-01T00:00:00"
    assert config.evaluate.top_k == (10, 20, 50)
    assert config.train.pooling == "mean"


def test_unknown_setting_is_a_usage_error_not_a_traceback():
    result = CliRunner().invoke(main, ["pipeline", "run", "--local", "--set", "train.nope=1"])
    assert result.exit_code == 2
    assert "train.nope: unknown field 'nope' in train" in result.output


def test_compile_with_image_makes_every_executor_run_that_image(tmp_path):
    import kfp.components

    image = "europe-docker.pkg.dev/shop/fashionrec/component@sha256:" + "ab" * 32
    output = tmp_path / "pipeline.yaml"
    result = CliRunner().invoke(main, ["pipeline", "compile", "--output", str(output), "--image", image])
    assert result.exit_code == 0, result.output
    assert output.read_text().startswith("# PIPELINE DEFINITION\n# Name: fashionrec-training")  # header kept
    pipeline = kfp.components.load_component_from_file(str(output))  # the KFP SDK parses it back
    assert pipeline.name == "fashionrec-training"
    executors = pipeline.pipeline_spec.deployment_spec["executors"]
    assert len(executors) == 7
    assert {executor["container"]["image"] for executor in executors.values()} == {image}


def test_compile_refuses_an_image_that_floats():
    for image in ("ghcr.io/fashionrec/fashionrec", "ghcr.io/fashionrec/fashionrec:latest", "localhost:5000/fr"):
        result = CliRunner().invoke(main, ["pipeline", "compile", "--output", "unused.yaml", "--image", image])
        assert result.exit_code == 2, (image, result.output)
        assert "--image" in result.output and ("no tag" in result.output or "latest" in result.output)


def test_a_bundled_dataset_brings_its_own_validated_settings_under_the_users_overrides():
    from fashionrec.config import DATASET_SETTINGS, PipelineConfig

    shop = build_config("default", (), "synthetic")
    assert shop.train.recency_half_life_events == DATASET_SETTINGS["synthetic"]["train.recency_half_life_events"] == 0
    assert shop.train.recency_half_life_days == 60.0
    assert build_config("default", (), "canonical") == PipelineConfig()  # a retailer's own data: the defaults
    movielens = build_config("default", (), "movielens-1m")
    assert movielens.export.popularity_prior_weight == 6.0
    assert (movielens.train.objective, movielens.train.epochs) == ("next_event", 2)
    mine = build_config("default", ("train.recency_half_life_days=3",), "synthetic")
    assert mine.train.recency_half_life_days == 3.0 and mine.train.recency_half_life_events == 0  # --set wins


def test_version_is_the_installed_packages():
    import importlib.metadata

    from click.testing import CliRunner

    from fashionrec.app.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output == f"fashionrec, version {importlib.metadata.version('fashionrec')}\n"


def test_help_documents_the_exit_statuses_and_the_output_option():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "--output [text|json]" in text
    for status in ("0 done", "1 the command failed", "2 a wrong command line",
                   "3 a service (Kubeflow, Vertex AI, Cloud Storage, Triton) could not be reached",
                   "4 `pipeline submit --wait --timeout` gave up"):
        assert status in text


@pytest.mark.e2e
def test_pipeline_run_output_json_is_one_document_with_the_metrics_and_the_gate(tmp_path):
    """The real local run (small shop, one epoch) in a subprocess: stdout is the summary document alone, the
    tasks' progress goes to stderr."""
    import json
    import subprocess
    import sys

    workspace = tmp_path / "workspace"
    done = subprocess.run([sys.executable, "-m", "fashionrec.app.cli", "--output", "json", "pipeline", "run", "--local",
                           "--workspace", str(workspace), "--size", "small", "--set", "train.epochs=1"],
                          capture_output=True, text=True, timeout=1_800)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert set(summary) == {"run_dir", "model_repository", "metrics", "gate", "report"}
    assert {"recall@10", "ndcg@10", "mrr", "auc"} <= set(summary["metrics"]["model"])
    assert isinstance(summary["gate"]["blessed"], bool) and isinstance(summary["gate"]["reasons"], list)
    assert summary["gate"]["checks"] and summary["report"].endswith("report.html")
    assert summary["model_repository"] == str(workspace.resolve() / "model_repository")
    assert "Full task logs:" in done.stderr
