"""The shop's log as a canonical dataset: copied whole, and with --debias every shown event's examination,
hand-computed on a tiny log; ingest accepts what it writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from fashionrec.app.cli import main
from fashionrec.app.training_data import CURVE_FILE, training_data
from fashionrec.config import IngestConfig
from fashionrec.stages import ingest

T0 = pd.Timestamp("2026-12-01T12:00:00Z")
PRODUCTS = ("X", "Y", "A", "B")


def _write_log(log: Path) -> None:
    """Slot 1 explored 4 times with X (2 clicks), slot 2 explored 4 times with Y (1 click); one more click on
    an unexplored carousel's slot 2, and a purchase no carousel showed."""
    rows, events = [], []
    for i in range(8):
        slot = 1 if i < 4 else 2
        shown = ["X", "A"] if slot == 1 else ["A", "Y"]
        rows.append({"request_id": f"r{i}", "customer_id": f"c{i}", "timestamp": T0, "touchpoint": "homepage",
                     "product_ids": shown, "positions": [1, 2], "explored_slot": slot})
    rows.append({"request_id": "r9", "customer_id": "c9", "timestamp": T0, "touchpoint": "homepage",
                 "product_ids": ["A", "B"], "positions": [1, 2], "explored_slot": None})
    for customer, product, request in (("c0", "X", "r0"), ("c1", "X", "r1"), ("c4", "Y", "r4"), ("c9", "B", "r9")):
        events.append({"customer_id": customer, "product_id": product, "event_type": "click", "request_id": request,
                       "timestamp": T0 + pd.Timedelta(seconds=5)})
    events.append({"customer_id": "c9", "product_id": "A", "event_type": "purchase", "request_id": None,
                   "timestamp": T0 - pd.Timedelta(days=1)})  # before any impression: attributed to none
    for kind, frame in (("impressions", pd.DataFrame(rows)), ("events", pd.DataFrame(events))):
        (log / kind / "date=2026-12-01").mkdir(parents=True)
        frame.to_parquet(log / kind / "date=2026-12-01" / "part-00000.parquet", index=False)
    pd.DataFrame({"product_id": list(PRODUCTS), "title": list(PRODUCTS), "category": "dress",
                  "price": 10.0}).to_parquet(log / "catalogue.parquet", index=False)


def test_without_debias_the_log_is_copied_with_the_catalogue(tmp_path: Path) -> None:
    _write_log(tmp_path / "log")
    data = training_data(str(tmp_path / "log"), tmp_path / "out")
    assert data.log_events == 5 and data.curve == {} and data.examined_events == 0
    written = pd.read_parquet(tmp_path / "out" / "events")
    assert len(written) == 5 and "examination" not in written
    assert pd.read_parquet(tmp_path / "out" / "catalogue.parquet")["product_id"].tolist() == list(PRODUCTS)


def test_debias_gives_each_shown_event_its_slots_examination(tmp_path: Path) -> None:
    _write_log(tmp_path / "log")
    data = training_data(str(tmp_path / "log"), tmp_path / "out", debias_window_s=60.0)
    # click rates: slot 1 2/4, slot 2 1/4 (already non-increasing) -> examination 1 and 0.5
    assert data.curve == {1: 1.0, 2: 0.5} and [(s.slot, s.explored, s.clicks) for s in data.slots] == [(1, 4, 2), (2, 4, 1)]
    written = pd.read_parquet(tmp_path / "out" / "events").sort_values(["customer_id", "event_type"])
    # X at slot 1 twice, Y at slot 2, B at slot 2 of the unexplored carousel; the purchase was shown nowhere
    np.testing.assert_allclose(written["examination"].to_numpy(), [1.0, 1.0, 0.5, 0.5, np.nan])
    assert data.examined_events == 4
    written_curve = json.loads((tmp_path / "out" / CURVE_FILE).read_text())
    assert written_curve["fitted"] == {"1": 1.0, "2": 0.5} and written_curve["family"] == data.family != ""
    events, quarantine = ingest.validate_events(written, "events", set(PRODUCTS), IngestConfig())
    assert quarantine.empty and events["examination"].isna().sum() == 1


def test_the_command_prints_the_curve(tmp_path: Path) -> None:
    _write_log(tmp_path / "log")
    result = CliRunner().invoke(main, ["shop", "training-data", "--log", str(tmp_path / "log"),
                                       "--output", str(tmp_path / "out"), "--debias"])
    assert result.exit_code == 0, result.output
    assert "1: 1.000, 2: 0.500" in result.output and "4 of 5 events have an examination" in result.output
    assert "the lowest BIC" in result.output
