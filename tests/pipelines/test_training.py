"""The compiled pipeline: which tasks a settings change re-runs, read from the YAML KFP receives.

KFP's cache key of a task is computed from its input parameter values, its input artifacts and its
component; a task whose upstream was reused from the cache receives the same artifacts. So a task runs
again exactly when one of its parameter values changed or a producer of its inputs ran again.
"""

from __future__ import annotations

import pytest
import yaml
from kfp import compiler

from fashionrec.config import PipelineConfig
from pipelines.training import RETRIES, TASK_RESOURCES, config_arguments, training_pipeline


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("compiled") / "pipeline.yaml"
    compiler.Compiler().compile(training_pipeline, str(path))
    return yaml.safe_load(path.read_text())


def _dependencies(task: dict) -> tuple[set[str], set[str]]:
    """The pipeline parameters a root task reads, and the tasks whose outputs it reads."""
    parameters, producers = set(), set()
    inputs = task.get("inputs", {})
    for source in (*inputs.get("parameters", {}).values(), *inputs.get("artifacts", {}).values()):
        if "componentInputParameter" in source:
            parameters.add(source["componentInputParameter"])
        for key in ("taskOutputParameter", "taskOutputArtifact"):
            if key in source:
                producers.add(source[key]["producerTask"])
    return parameters, producers | set(task.get("dependentTasks", []))


def rerun_tasks(compiled: dict, before: PipelineConfig, after: PipelineConfig) -> set[str]:
    """The root tasks whose cache key differs between a run with ``before`` and one with ``after``."""
    old, new = config_arguments(before), config_arguments(after)
    changed = {name for name in old if old[name] != new[name]}
    tasks = {name: _dependencies(task) for name, task in compiled["root"]["dag"]["tasks"].items()}
    rerun: set[str] = set()
    for _ in tasks:  # to a fixed point: the DAG is at most len(tasks) deep
        rerun |= {name for name, (parameters, producers) in tasks.items()
                  if parameters & changed or producers & rerun}
    return rerun


def test_every_config_section_is_a_pipeline_parameter_with_its_default(compiled):
    declared = compiled["root"]["inputDefinitions"]["parameters"]
    for name, value in config_arguments(PipelineConfig()).items():
        assert declared[name]["defaultValue"] == value


@pytest.mark.parametrize(("setting", "value", "expected"), [
    ("evaluate.seed", 4, {"evaluate-model", "condition-1"}),
    ("export.popularity_prior_weight", 1.0, {"export-embeddings", "evaluate-model", "condition-1"}),
    ("train.epochs", 3, {"train-model", "export-embeddings", "evaluate-model", "condition-1"}),
    ("transform.history_length", 20,
     {"transform-data", "train-model", "export-embeddings", "evaluate-model", "condition-1"}),
    ("serving.max_top_k", 500, {"evaluate-model", "condition-1"}),
    ("registry.model_id", "fashionrec-eu", {"condition-1"}),  # only the gated publish task reads it
    ("shop.seed", 8, {"prepare-dataset", "ingest-data", "transform-data", "train-model", "export-embeddings",
                      "evaluate-model", "condition-1"}),
])
def test_a_setting_re_runs_only_the_stages_that_read_it_and_those_after(compiled, setting, value, expected):
    assert rerun_tasks(compiled, PipelineConfig(), PipelineConfig().with_overrides({setting: value})) == expected


def test_evaluation_settings_leave_ingest_transform_and_train_cached(compiled):
    changed = PipelineConfig().with_overrides({"evaluate.seed": 4, "evaluate.bootstrap_resamples": 200})
    assert not rerun_tasks(compiled, PipelineConfig(), changed) & {"ingest-data", "transform-data", "train-model"}


def test_publish_outputs_a_model_artifact_and_still_returns_the_version(compiled):
    component = compiled["components"]["comp-publish-model"]
    outputs = component["outputDefinitions"]
    assert outputs["artifacts"]["published_model"]["artifactType"]["schemaTitle"] == "system.Model"
    assert outputs["parameters"] == {"Output": {"parameterType": "NUMBER_INTEGER"}}
    publish = compiled["components"]["comp-condition-1"]["dag"]["tasks"]["publish-model"]
    assert {name: source["componentInputParameter"] for name, source in publish["inputs"]["parameters"].items()} == {
        name: f"pipelinechannel--{name}"
        for name in ("serving_config", "evaluate_config", "registry_config", "model_repository")}


def _all_tasks(compiled: dict) -> dict[str, dict]:
    """Every task of the pipeline, the ones inside conditions included."""
    tasks = dict(compiled["root"]["dag"]["tasks"])
    for component in compiled["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return {name: task for name, task in tasks.items() if "componentRef" in task and "condition" not in name}


def test_every_task_asks_for_its_resources_and_retries_transient_failures(compiled):
    tasks = _all_tasks(compiled)
    assert set(tasks) == set(TASK_RESOURCES)
    executors = compiled["deploymentSpec"]["executors"]
    for name, task in tasks.items():
        resources = executors[f"exec-{name}"]["container"]["resources"]
        wanted = TASK_RESOURCES[name]
        assert (resources["resourceCpuRequest"], resources["resourceMemoryRequest"]) == (wanted.cpu, wanted.memory)
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == (wanted.cpu, wanted.memory)
        assert task["retryPolicy"]["maxRetryCount"] == RETRIES and task["retryPolicy"]["backoffDuration"] == "60s"


def test_a_train_accelerator_puts_the_train_task_alone_on_gpus_with_the_gpu_image(tmp_path):
    from fashionrec.app.runner import compile_pipeline
    from pipelines.training import Accelerator

    path = tmp_path / "gpu.yaml"
    compile_pipeline(str(path), image="registry.example/fashionrec:1.0", train_accelerator=Accelerator("nvidia.com/gpu", 2),
                     train_image="registry.example/fashionrec-gpu:1.0")
    executors = yaml.safe_load(path.read_text())["deploymentSpec"]["executors"]
    train = executors["exec-train-model"]["container"]
    assert train["image"] == "registry.example/fashionrec-gpu:1.0"
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["resources"]["accelerator"]["resourceCount"] == "2"
    others = {name: e["container"] for name, e in executors.items() if name != "exec-train-model"}
    assert all(c["image"] == "registry.example/fashionrec:1.0" and "accelerator" not in c.get("resources", {})
               for c in others.values())


def test_a_train_accelerator_needs_the_gpu_image():
    from fashionrec.app.runner import compile_pipeline
    from pipelines.training import Accelerator

    with pytest.raises(ValueError, match="needs the GPU image"):
        compile_pipeline("unused.yaml", train_accelerator=Accelerator("NVIDIA_L4"))
    with pytest.raises(ValueError, match="TYPE:COUNT"):
        Accelerator.parse("nvidia.com/gpu:two")
