"""`fashionrec experiment report` as a script reads it: `--output json` prints report.json's document on stdout.

Real parts: the shop's own EventLog writes a small log, the real command reads it and writes its report.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from click.testing import CliRunner

from fashionrec.app.cli import main
from fashionrec.online.event_log import EventLog

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc).timestamp()
EXPERIMENT = {"name": "hero", "salt": "hero", "start": "2026-03-01T00:00:00+00:00",
              "arms": [{"name": "control", "version": 1, "share": 0.5}, {"name": "treatment", "version": 2, "share": 0.5}]}


def _impression(request_id: str, customer: str, arm: str, products: str) -> dict:
    return {"request_id": request_id, "timestamp": T0, "customer_id": customer, "touchpoint": "home",
            "model_version": 1 if arm == "control" else 2, "product_ids": list(products),
            "positions": list(range(len(products))), "scores": [1.0] * len(products), "fallback": False,
            "experiment": "hero", "arm": arm}


def _event(customer: str, product: str, event_type: str, request_id: str) -> dict:
    return {"customer_id": customer, "product_id": product, "event_type": event_type, "timestamp": T0 + 60,
            "weight": 1.0, "request_id": request_id, "experiment": "hero", "arm": None}


def _write_log(tmp_path) -> str:
    log_dir = str(tmp_path / "log")
    with EventLog(log_dir, str(tmp_path / "journal"), roll_records=1_000, roll_seconds=3_600.0) as log:
        log.append("impressions", [_impression("r1", "c1", "control", "AB"), _impression("r2", "c2", "control", "B"),
                                   _impression("r3", "t1", "treatment", "AB")])
        log.append("events", [_event("t1", "A", "click", "r3"), _event("t1", "A", "purchase", "r3")])
    return log_dir


def test_experiment_report_output_json_is_the_reports_document(tmp_path):
    log_dir = _write_log(tmp_path)
    (tmp_path / "hero.json").write_text(json.dumps(EXPERIMENT))
    (tmp_path / "catalogue.csv").write_text("product_id,price\nA,30.0\nB,20.0\n")
    result = CliRunner().invoke(main, ["--output", "json", "experiment", "report", "--log-dir", log_dir,
                                       "--file", str(tmp_path / "hero.json"), "--catalogue",
                                       str(tmp_path / "catalogue.csv"), "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document == json.loads((tmp_path / "report" / "report.json").read_text())
    arms = {arm["name"]: arm for arm in document["arms"]}
    assert (arms["control"]["visitors"], arms["treatment"]["visitors"]) == (2, 1)
    assert arms["treatment"]["attributed"]["click"] == 1 and arms["control"]["attributed"]["click"] == 0
    assert document["experiment"] == "hero" and "verdict" in document


def test_experiment_report_text_output_is_unchanged_by_default(tmp_path):
    log_dir = _write_log(tmp_path)
    (tmp_path / "hero.json").write_text(json.dumps(EXPERIMENT))
    (tmp_path / "catalogue.csv").write_text("product_id,price\nA,30.0\nB,20.0\n")
    result = CliRunner().invoke(main, ["experiment", "report", "--log-dir", log_dir, "--file",
                                       str(tmp_path / "hero.json"), "--catalogue", str(tmp_path / "catalogue.csv"),
                                       "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    assert "verdict (" in result.stdout and result.stdout.strip().splitlines()[-1].startswith("Report: ")


def test_a_gcs_repository_without_google_credentials_is_one_line_with_exit_3(tmp_path, monkeypatch):
    """The real google.auth lookup, pointed at a key file that is not there (and at no storage emulator)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing-key.json"))
    result = CliRunner().invoke(main, ["experiment", "status", "--model-repository", "gs://shop-models/repository"])
    assert result.exit_code == 3, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: no Google credentials for gs://shop-models/repository (run `gcloud auth "
                           "application-default login`, or set GOOGLE_APPLICATION_CREDENTIALS): ")
    assert "missing-key.json" in line
