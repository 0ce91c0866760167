"""Compile the KFP pipeline, or run the very same definition locally with ``kfp.local``.

A local run keeps everything under one workspace folder: ``pipeline_root/`` holds every task's
artifacts (``<pipeline>-<timestamp>/<task>/<output>``) and ``model_repository/`` the published Triton
repository, which ``fashionrec serve`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fashionrec.config import PipelineConfig

PIPELINE_ROOT = "pipeline_root"
MODEL_REPOSITORY = "model_repository"


@dataclass(frozen=True)
class LocalRun:
    run_dir: Path  # this run's folder under the pipeline root
    model_repository: Path

    def artifact(self, task: str, output: str) -> Path:
        return self.run_dir / task / output


def compile_pipeline(output: str) -> None:
    from kfp import compiler

    from pipelines.training import training_pipeline

    compiler.Compiler().compile(training_pipeline, package_path=output)


def run_local(workspace: str, config: PipelineConfig, model_repository: str | None = None) -> LocalRun:
    """Run the pipeline in this Python environment (no Docker); returns where its outputs are."""
    from kfp import local

    from pipelines.training import PIPELINE_NAME, training_pipeline

    root = Path(workspace).resolve() / PIPELINE_ROOT
    repository = Path(model_repository or Path(workspace).resolve() / MODEL_REPOSITORY)
    before = set(root.glob(f"{PIPELINE_NAME}-*")) if root.exists() else set()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    training_pipeline(model_repository=str(repository), config_json=config.to_json())
    (run_dir,) = set(root.glob(f"{PIPELINE_NAME}-*")) - before
    return LocalRun(run_dir=run_dir, model_repository=repository)


def latest_local_run(workspace: str) -> LocalRun:
    """The most recent local run in ``workspace``."""
    from pipelines.training import PIPELINE_NAME

    runs = sorted((Path(workspace).resolve() / PIPELINE_ROOT).glob(f"{PIPELINE_NAME}-*"))
    if not runs:
        raise FileNotFoundError(f"no local pipeline run under {workspace}; run `fashionrec pipeline run --local` first")
    return LocalRun(run_dir=runs[-1], model_repository=Path(workspace).resolve() / MODEL_REPOSITORY)
