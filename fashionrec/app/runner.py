"""Compile the KFP pipeline, or run the very same definition locally with ``kfp.local``.

A local run keeps everything under one workspace folder: ``pipeline_root/`` holds every task's
artifacts (``<pipeline>-<timestamp>/<task>/<output>``) and ``model_repository/`` the published Triton
repository, which ``fashionrec serve`` reads.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from fashionrec import storage
from fashionrec.config import ExperimentConfig, PipelineConfig

if TYPE_CHECKING:  # the KFP definitions load only when a command compiles or runs them
    from pipelines.training import Accelerator

PIPELINE_ROOT = "pipeline_root"
MODEL_REPOSITORY = "model_repository"
LOGS = "logs"
# Task output lines worth showing as progress; everything else goes to the run's log file only.
PROGRESS_LINES = re.compile(r"Executing task|finished with status|Epoch \d+/\d+|/step|\.\.\. |Traceback|Error|error:")


@dataclass(frozen=True)
class LocalRun:
    run_dir: Path  # this run's folder under the pipeline root
    model_repository: Path | str  # a local folder, or a gs:// URI kept as text

    def artifact(self, task: str, output: str) -> Path:
        return self.run_dir / task / output


def compile_pipeline(output: str, image: str | None = None, train_accelerator: Accelerator | None = None,
                     train_image: str | None = None) -> None:
    """Compile the training pipeline to KFP v2 YAML at ``output``; every task runs ``image``, the train task
    ``train_image`` on ``train_accelerator`` when given (both or neither: a GPU task needs the GPU image).

    ``image`` defaults to ``fashionrec.config.COMPONENT_IMAGE`` (the components' ``base_image``, fixed
    when ``components.stages`` is imported). Choosing it here, after compilation, lets one process
    compile for any registry without re-importing the components.
    """
    import yaml
    from kfp import compiler

    from pipelines.training import TRAIN_TASK, build_training_pipeline

    if (train_accelerator is None) != (train_image is None):
        raise ValueError("a train accelerator needs the GPU image (--train-image) and the GPU image an accelerator "
                         "(--train-gpu)")
    compiler.Compiler().compile(build_training_pipeline(train_accelerator), package_path=output)
    if image is None and train_image is None:
        return
    text = Path(output).read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    if image is not None:
        set_component_image(spec, image)
    if train_image is not None:
        set_task_image(spec, TRAIN_TASK, train_image)
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines(keepends=True)))
    Path(output).write_text(header + yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def compile_experiment_report(output: str, image: str | None = None) -> None:
    """Compile the experiment-report pipeline (:mod:`pipelines.experiment_report`) to KFP v2 YAML at
    ``output``, its task running ``image`` when given (as :func:`compile_pipeline`)."""
    import yaml
    from kfp import compiler

    from pipelines.experiment_report import experiment_report_pipeline

    compiler.Compiler().compile(experiment_report_pipeline, package_path=output)
    if image is None:
        return
    text = Path(output).read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    set_component_image(spec, image)
    header = "".join(itertools.takewhile(lambda line: line.startswith("#"), text.splitlines(keepends=True)))
    Path(output).write_text(header + yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def run_experiment_report_local(workspace: str, experiment: str, log_dir: str, config: ExperimentConfig) -> Path:
    """Run the experiment-report pipeline with ``kfp.local`` (``experiment``: its JSON definition); returns the
    run's folder (``report-experiment/report`` is the HTML artifact)."""
    from kfp import local

    from pipelines.experiment_report import PIPELINE_NAME, experiment_report_pipeline

    root = Path(workspace).resolve() / PIPELINE_ROOT
    before = set(root.glob(f"{PIPELINE_NAME}-*")) if root.exists() else set()
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    experiment_report_pipeline(experiment=experiment, log_dir=log_dir, experiment_config=config.to_json())
    (run_dir,) = set(root.glob(f"{PIPELINE_NAME}-*")) - before
    return run_dir


def validate_image_reference(image: str) -> str:
    """``image`` if it names a fixed build (``name:tag`` other than ``latest``, or ``name@sha256:...``).

    Why: a pipeline run must be reproducible, so its tasks may not float on ``latest`` or an untagged
    name. Raises ValueError with the reason otherwise.
    """
    name, at, digest = image.partition("@")
    if at:
        if not name or not digest.startswith("sha256:") or len(digest) != len("sha256:") + 64:
            raise ValueError(f"image {image!r}: a digest must be name@sha256:<64 hex digits>")
        return image
    last_segment = image.rsplit("/", 1)[-1]  # a registry host may carry a :port, the tag is in the last part
    repository, colon, tag = last_segment.partition(":")
    if not repository or not colon or not tag:
        raise ValueError(f"image {image!r} has no tag; name a pinned build, e.g. {image}:0.1.0")
    if tag == "latest":
        raise ValueError(f"image {image!r} floats on 'latest'; name a pinned tag or digest")
    return image


def set_component_image(spec: dict, image: str) -> int:
    """Point every executor of a compiled pipeline spec (``deploymentSpec.executors.*.container``) at
    ``image``, in place; returns how many executors there are. Raises ValueError for an unpinned image
    or a spec without container executors (nothing would run the image)."""
    validate_image_reference(image)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    containers = [executor["container"] for executor in executors.values() if "container" in executor]
    if not containers:
        raise ValueError("the pipeline spec has no container executors")
    for container in containers:
        container["image"] = image
    return len(containers)


def set_task_image(spec: dict, task: str, image: str) -> None:
    """Point one task's executor (``exec-<task>``) of a compiled pipeline spec at ``image``, in place."""
    validate_image_reference(image)
    executors = spec.get("deploymentSpec", {}).get("executors", {})
    if f"exec-{task}" not in executors:
        raise ValueError(f"the pipeline spec has no executor for task {task!r}")
    executors[f"exec-{task}"]["container"]["image"] = image


def run_local(
    workspace: str,
    config: PipelineConfig,
    model_repository: str | None = None,
    verbose: bool = False,
    dataset: str = "synthetic",
    data_dir: str | None = None,
) -> LocalRun:
    """Run the pipeline in this Python environment (no Docker); returns where its outputs are.

    Tasks' full output goes to ``<workspace>/logs/run-*.log``; the console shows task starts and ends
    and training progress (everything with ``verbose``).
    """
    from kfp import local

    from pipelines.training import PIPELINE_NAME, config_arguments, training_pipeline

    root = Path(workspace).resolve() / PIPELINE_ROOT
    repository = model_repository or Path(workspace).resolve() / MODEL_REPOSITORY
    if not storage.is_gcs(str(repository)):
        repository = Path(repository).resolve()
    before = set(root.glob(f"{PIPELINE_NAME}-*")) if root.exists() else set()
    log_file = Path(workspace).resolve() / LOGS / f"run-{datetime.now():%Y%m%d-%H%M%S}.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    with _task_output_to(log_file, verbose):
        training_pipeline(model_repository=str(repository), dataset=dataset, data_dir=data_dir or "",
                          **config_arguments(config))
    (run_dir,) = set(root.glob(f"{PIPELINE_NAME}-*")) - before
    return LocalRun(run_dir=run_dir, model_repository=repository)


def latest_local_run(workspace: str) -> LocalRun:
    """The most recent local run in ``workspace``."""
    from pipelines.training import PIPELINE_NAME

    runs = sorted((Path(workspace).resolve() / PIPELINE_ROOT).glob(f"{PIPELINE_NAME}-*"))
    if not runs:
        raise FileNotFoundError(f"no local pipeline run under {workspace}; run `fashionrec pipeline run --local` first")
    return LocalRun(run_dir=runs[-1], model_repository=Path(workspace).resolve() / MODEL_REPOSITORY)


@contextlib.contextmanager
def _task_output_to(log_file: Path, verbose: bool) -> Iterator[None]:
    """Send what kfp.local prints of each task to ``log_file``, echoing only progress lines."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(f"Full task logs: {log_file}", file=sys.stderr)
    with open(log_file, "w", encoding="utf-8") as log, warnings.catch_warnings():
        # kfp.local warns that it ignores the image and display names: expected for a local run.
        warnings.filterwarnings("ignore", message=".*(base image|have no effect in the current local runner).*")
        with contextlib.redirect_stdout(_ProgressFilter(log, sys.stdout, verbose)):
            yield


class _ProgressFilter(io.TextIOBase):
    """A text stream that copies everything to ``log`` and progress lines to ``console``."""

    def __init__(self, log: TextIO, console: TextIO, verbose: bool) -> None:
        self._log, self._console, self._verbose, self._partial = log, console, verbose, ""

    def write(self, text: str) -> int:
        self._log.write(text)
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if self._verbose or PROGRESS_LINES.search(line):
                self._console.write(line.strip() + "\n")
        self._console.flush()
        return len(text)

    def flush(self) -> None:
        self._log.flush()
