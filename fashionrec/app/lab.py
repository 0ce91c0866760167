"""The shop lab: online experiments on a simulated shop, end to end, with every part real.

Published versions are served by a real Triton (explicit model control, so experiments start and stop in
place); the real shop service (``fashionrec shop serve``, a subprocess) routes visitors to their arms;
simulated customers of the embedded shop (:mod:`fashionrec.app.simulate`) visit it over HTTP; the online
report (:mod:`fashionrec.evaluation.experiment_report`) reads the service's event log. The offline half
(the pipeline) and the online half meet here: ``benchmarks/simulate.py`` and the loop test run it.

Also here, because they need a finished experiment rather than new traffic:

* :func:`resalted`: the visitors of one arm all saw the same version, so assigning them again under
  another experiment (other salt, other shares) is an A/A test, or a deliberately broken split, of that
  experiment, from the same log;
* :func:`publish_shuffled`: a deliberately broken model (the served table with its rows shuffled), the
  A/B test's known-worse arm.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fashionrec import artifacts
from fashionrec.app.runner import LocalRun
from fashionrec.app.simulate import SimulationSummary, run_simulation
from fashionrec.config import PipelineConfig, ServingConfig, SimulationConfig
from fashionrec.evaluation.experiment_report import (ExperimentReport, experiment_report, log_prices,
                                                     read_experiment_log)
from fashionrec.repository import versions
from fashionrec.repository.experiments import Experiment
from fashionrec.repository.publish import publish_model_repository
from fashionrec.repository.served import served_version
from fashionrec.serving.server import TritonServer

SHOP_START_S = 300.0  # the service imports every customer's history before it answers
SHOP_POLL_S = 0.2
SHOP_STOP_S = 60.0  # a stopping service flushes impressions and rolls its journal into the log
LOG_TAIL_CHARS = 2_000  # of the service's log, quoted when it fails to start


@dataclasses.dataclass(frozen=True)
class ShopInputs:
    """What a shop service starts from: its catalogue, the past events that seed its customers, and the
    model repository Triton serves."""

    catalogue: str
    history: str
    model_repository: str

    @classmethod
    def of_run(cls, run: LocalRun) -> ShopInputs:
        """A pipeline run's ingested catalogue and training events, and the repository it published to."""
        ingested = run.artifact("ingest-data", "ingested")
        return cls(str(ingested / artifacts.CATALOGUE_FILE), str(ingested / artifacts.TRAIN_EVENTS_FILE),
                   str(run.model_repository))


@dataclasses.dataclass(frozen=True)
class ExperimentRun:
    """One experiment's traffic and verdict, and where its event log is."""

    summary: SimulationSummary
    report: ExperimentReport
    log_dir: str


class ShopLab:
    """A real Triton over ``inputs.model_repository``; each :meth:`run` adds a shop service and traffic."""

    def __init__(self, inputs: ShopInputs, config: PipelineConfig, folder: Path,
                 echo: Callable[[str], None] = print) -> None:
        self.inputs, self.config, self.folder, self.echo = inputs, config, Path(folder), echo
        self.triton: TritonServer | None = None
        self._runs = 0

    def __enter__(self) -> ShopLab:
        self.triton = TritonServer(self.inputs.model_repository, self.config.serving, http_port=0, grpc_port=0,
                                   metrics_port=0, model_control_mode="explicit").__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.triton is not None:
            self.triton.__exit__(kind, error, trace)

    def run(self, experiment: Experiment, simulation: SimulationConfig) -> ExperimentRun:
        """Start ``experiment`` on Triton, a fresh shop service in front (its own state and log), simulated
        visits, then stop both and report from the log."""
        assert self.triton is not None, "use the lab as a context manager"
        self._runs += 1
        folder = self.folder / f"{self._runs:02d}-{experiment.name}"
        versions.start_experiment(self.inputs.model_repository, experiment, self.config.serving, self.triton.grpc_url)
        try:
            with ShopService(self.inputs, self.triton.grpc_url, folder, lab_settings(self.config)) as url:
                self.echo(f"experiment {experiment.name}: shop at {url}, "
                          f"{simulation.days} days x {simulation.visitors_per_day} visitors")
                summary = run_simulation(url, self.config.shop, simulation, self.echo)
        finally:
            versions.stop_experiment(self.inputs.model_repository, self.config.serving, self.triton.grpc_url)
        log_dir = str(folder / "log")
        return ExperimentRun(summary, report_of(experiment, log_dir, self.config), log_dir)


class ShopService:
    """``fashionrec shop serve`` as a subprocess on a free port, its state, journal and log under ``folder``
    and ``settings`` (``KEY=VALUE``) on top. :meth:`start` waits until it answers; :meth:`stop` ends it
    (SIGTERM: the service flushes its impressions and rolls its journal into the log; ``kill``: SIGKILL, as a
    crash). As a context manager it yields its URL."""

    def __init__(self, inputs: ShopInputs, triton_url: str, folder: Path, settings: Sequence[str] = (),
                 start_s: float = SHOP_START_S) -> None:
        self.folder, self.start_s = Path(folder), start_s
        self.folder.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        own = [f"online.port={port}", f"online.triton_url={triton_url}",
               f"online.sqlite_path={self.folder / 'state.sqlite3'}", f"online.event_log_dir={self.folder / 'log'}",
               f"online.journal_dir={self.folder / 'journal'}"]
        self.arguments = [sys.executable, "-m", "fashionrec.app.cli", "shop", "serve", "--catalogue", inputs.catalogue,
                          "--model-repository", inputs.model_repository, "--history", inputs.history]
        for setting in [*own, *settings]:
            self.arguments += ["--set", setting]
        self.process: subprocess.Popen | None = None

    def start(self) -> ShopService:
        with open(self.folder / "shop.log", "ab") as log:
            self.process = subprocess.Popen(self.arguments, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + self.start_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the shop service exited: {self._log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(SHOP_POLL_S)
        self.stop()
        raise RuntimeError(f"the shop service did not answer within {self.start_s:g} s: {self._log_tail()}")

    def stop(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            self.process.wait(timeout=SHOP_STOP_S)

    def __enter__(self) -> str:
        return self.start().url

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def _log_tail(self) -> str:
        return (self.folder / "shop.log").read_text()[-LOG_TAIL_CHARS:]


def lab_settings(config: PipelineConfig) -> list[str]:
    """The settings a lab's shop runs with beyond its own folder: how often it re-reads the experiment, and
    its exploration."""
    online = config.online
    return [f"experiment.refresh_s={config.experiment.refresh_s}",
            f"online.exploration_share={online.exploration_share}",
            f"online.exploration_positions={json.dumps(list(online.exploration_positions))}",
            f"online.exploration_pool={online.exploration_pool}",
            f"online.exploration_mode={online.exploration_mode}"]


def report_of(experiment: Experiment, log_dir: str, config: PipelineConfig,
              log: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> ExperimentReport:
    """The online report of ``experiment`` from a shop's log (or its already read ``log``: events, impressions)."""
    events, impressions = log if log is not None else read_experiment_log(log_dir)
    return experiment_report(experiment, events, impressions, log_prices(log_dir), config.experiment)


def resalted(events: pd.DataFrame, impressions: pd.DataFrame, arm: str,
             experiment: Experiment) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The log of one ``arm``'s visitors, tagged as if ``experiment`` had assigned them (its salt and shares).
    They all saw the same version, so this is an A/A test of ``experiment``, or, with shares other than
    declared, a broken split, at no cost in traffic."""
    mine = impressions[impressions["arm"] == arm]
    visitors = set(mine["customer_id"])
    arm_of = {visitor: experiment.arm_for(visitor).name for visitor in visitors}

    def tagged(frame: pd.DataFrame) -> pd.DataFrame:
        kept = frame[frame["customer_id"].isin(visitors)].copy()
        kept["experiment"] = experiment.name
        kept["arm"] = kept["customer_id"].map(arm_of)
        return kept

    return tagged(events), tagged(mine)


def publish_shuffled(repository: str, serving: ServingConfig, seed: int = 0) -> int:
    """Publish the served version again with its embedding rows shuffled (prior, pooling and candidate sets
    kept): a model known to be worse, for checking that an A/B test finds it. Returns its version."""
    served = served_version(repository, serving)
    rows = np.random.default_rng(seed).permutation(len(served.embeddings))
    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder)
        columns = {"product_id": served.product_ids, "is_new": np.zeros(len(rows), bool),
                   "embedding": pa.array([row.tolist() for row in served.embeddings[rows]], pa.list_(pa.float32())),
                   "popularity_prior": pa.array(served.prior, pa.float32())}
        pq.write_table(pa.table(columns), export / "embeddings.parquet")
        served.aggregation.write(str(export / "aggregation.json"))
        (export / "blessing.json").write_text(json.dumps({"blessed": True, "reasons": [],
                                                          "note": "a deliberately broken arm for an A/B check"}))
        published = publish_model_repository(str(export / "embeddings.parquet"), str(export / "blessing.json"),
                                             repository, serving, candidate_sets=served.candidate_sets)
    versions.activate(repository, served.version, serving)  # the shuffled copy is an arm, never served
    return int(published.version)


def publish_variant(run: LocalRun, repository: str, serving: ServingConfig, note: str) -> int:
    """Publish a pipeline run's exported model into ``repository`` as an arm, whatever its gate said (an
    experiment may test a model the gate refused: that is how one learns whether the gate is right), and
    keep the served version served. Returns its version."""
    served = served_version(repository, serving)
    with tempfile.TemporaryDirectory() as folder:
        blessing = Path(folder) / "blessing.json"
        blessing.write_text(json.dumps({"blessed": True, "reasons": [], "note": note}))
        embeddings = run.artifact("export-embeddings", "embeddings") / artifacts.EMBEDDINGS_FILE
        published = publish_model_repository(str(embeddings), str(blessing), repository, serving)
    if served is not None:
        versions.activate(repository, served.version, serving)
    return int(published.version)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
