"""Compile the KFP pipeline, or run the very same definition locally with ``kfp.local``.

A local run keeps everything under one workspace folder: ``pipeline_root/`` holds every task's
artifacts (``<pipeline>-<timestamp>/<task>/<output>``) and ``model_repository/`` the published Triton
repository, which ``fashionrec serve`` reads.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TextIO

from fashionrec import storage
from fashionrec.config import PipelineConfig

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


def compile_pipeline(output: str) -> None:
    from kfp import compiler

    from pipelines.training import training_pipeline

    compiler.Compiler().compile(training_pipeline, package_path=output)


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

    from pipelines.training import PIPELINE_NAME, training_pipeline

    root = Path(workspace).resolve() / PIPELINE_ROOT
    repository = model_repository or Path(workspace).resolve() / MODEL_REPOSITORY
    if not storage.is_gcs(str(repository)):
        repository = Path(repository).resolve()
    before = set(root.glob(f"{PIPELINE_NAME}-*")) if root.exists() else set()
    log_file = Path(workspace).resolve() / LOGS / f"run-{datetime.now():%Y%m%d-%H%M%S}.log"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    with _task_output_to(log_file, verbose):
        training_pipeline(
            model_repository=str(repository), dataset=dataset, data_dir=data_dir or "", config_json=config.to_json()
        )
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
