"""The experiment report as a KFP pipeline step, run with ``kfp.local``: the same report as in-process, and
its page as an HTML artifact; compiled to YAML for Kubeflow / Vertex AI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from fashionrec.app.runner import compile_experiment_report, run_experiment_report_local
from fashionrec.config import ExperimentConfig
from fashionrec.evaluation.experiment_report import HTML_FILE, JSON_FILE, report_from_log
from fashionrec.online.event_log import EventLog
from fashionrec.repository.experiments import Experiment

T0 = 1_796_000_000.0
EXPERIMENT = Experiment.from_dict({"name": "hero", "salt": "hero", "start": "2026-01-01T00:00:00Z", "arms": [
    {"name": "control", "version": 1, "share": 0.5}, {"name": "treatment", "version": 2, "share": 0.5}]})
VISITORS = 30  # per arm


def write_log(folder: Path) -> str:
    """A shop log: every visitor shown products A and B once; control visitors click every third time,
    treatment visitors every other time; a tenth of the clicks end in a purchase."""
    log_dir = str(folder / "log")
    impressions, events = [], []
    for arm in ("control", "treatment"):
        for i in range(VISITORS):
            visitor, request = f"{arm}-{i}", f"{arm}-r{i}"
            impressions.append({"request_id": request, "timestamp": T0 + i, "customer_id": visitor,
                                "touchpoint": "for_you", "model_version": 1, "product_ids": ["A", "B"],
                                "positions": [1, 2], "scores": [1.0, 0.5], "fallback": False,
                                "experiment": "hero", "arm": arm})
            if i % (2 if arm == "treatment" else 3) == 0:
                events.append({"customer_id": visitor, "product_id": "A", "event_type": "click",
                               "timestamp": T0 + i + 5, "weight": 1.0, "request_id": request,
                               "experiment": "hero", "arm": arm})
            if i % 10 == 0:
                events.append({"customer_id": visitor, "product_id": "B", "event_type": "purchase",
                               "timestamp": T0 + i + 9, "weight": 5.0, "request_id": request,
                               "experiment": "hero", "arm": arm})
    with EventLog(log_dir, str(folder / "journal"), roll_records=10_000, roll_seconds=3_600.0) as log:
        log.append("impressions", impressions)
        log.append("events", events)
    pd.DataFrame({"product_id": ["A", "B"], "title": ["a", "b"], "category": ["dress", "bag"], "price": [30.0, 80.0]}
                 ).to_parquet(Path(log_dir) / "catalogue.parquet", index=False)
    return log_dir


def test_the_pipeline_step_writes_the_same_report_and_an_html_artifact(tmp_path: Path) -> None:
    log_dir = write_log(tmp_path)
    config = ExperimentConfig()
    expected = report_from_log(EXPERIMENT, log_dir, str(tmp_path / "in-process"), config)
    assert {arm.name: arm.visitors for arm in expected.arms} == {"control": VISITORS, "treatment": VISITORS}
    assert expected.arm("treatment").metrics["ctr"] == 15 / 30 and expected.arm("control").metrics["ctr"] == 10 / 30

    run_dir = run_experiment_report_local(str(tmp_path / "kfp"), json.dumps(EXPERIMENT.to_dict()), log_dir, config)
    task = run_dir / "report-experiment"
    produced = json.loads((task / "summary" / JSON_FILE).read_text())
    assert produced == json.loads((tmp_path / "in-process" / JSON_FILE).read_text())
    page = (task / "report").read_text()
    assert page == (task / "summary" / HTML_FILE).read_text() and "hero" in page and "treatment" in page


def test_it_compiles_for_kubeflow_and_vertex_with_a_pinned_image(tmp_path: Path) -> None:
    output = tmp_path / "report.yaml"
    compile_experiment_report(str(output), "europe-docker.pkg.dev/p/r/fashionrec-component:1.2.3")
    spec = yaml.safe_load(output.read_text())
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"experiment", "log_dir", "experiment_config"}
    (executor,) = spec["deploymentSpec"]["executors"].values()
    assert executor["container"]["image"] == "europe-docker.pkg.dev/p/r/fashionrec-component:1.2.3"
    assert set(spec["root"]["dag"]["tasks"]["report-experiment"]["inputs"]["parameters"]) == {
        "experiment", "log_dir", "experiment_config"}
