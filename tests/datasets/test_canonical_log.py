"""The shop's event log folder is a canonical dataset: ingest reads its Parquet parts directly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fashionrec import artifacts, storage
from fashionrec.config import EVENT_TYPES, IngestConfig, ShopConfig
from fashionrec.datasets import canonical_files, prepare_dataset
from fashionrec.online.event_log import EVENTS, EventLog
from fashionrec.stages.ingest import ingest

JAN_1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
HOUR = 3_600.0
PRODUCTS = [f"P{i}" for i in range(6)]
CATALOGUE = pd.DataFrame({"product_id": PRODUCTS, "title": [f"item {p}" for p in PRODUCTS],
                          "category": ["dress", "coat"] * 3, "price": [10.0 + i for i in range(6)]})
CONFIG = IngestConfig(holdout_fraction=0.25, latest_timestamp="2026-12-31")


def _logged_events() -> list[dict[str, object]]:
    """Five days of events, a few an hour, with sub-second timestamps and explicit weights."""
    return [{"customer_id": f"C{i % 9}", "product_id": PRODUCTS[i % 6], "event_type": EVENT_TYPES[i % 4],
             "timestamp": JAN_1 + i * 7 * HOUR + 0.123456, "weight": 1.0 + i % 3} for i in range(18)]


def _write_log(log_dir: Path, journal_dir: Path) -> list[dict[str, object]]:
    events = _logged_events()
    log = EventLog(str(log_dir), str(journal_dir), roll_records=5, roll_seconds=60.0)
    for start in range(0, len(events), 3):  # batches as the event API posts them, rolled along the way
        log.append(EVENTS, events[start:start + 3])
        log.roll_if_due()
    log.close()
    CATALOGUE.to_parquet(log_dir / "catalogue.parquet", index=False)  # the service writes it there
    return events


def _keys(frame: pd.DataFrame) -> list[tuple[object, ...]]:
    micros = frame["timestamp"].dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64")
    return sorted(zip(frame["customer_id"], frame["product_id"], frame["event_type"], micros,
                      frame["weight"].astype(float), strict=True))


def test_ingest_accepts_every_logged_event_from_the_log_folder(tmp_path):
    log_dir = tmp_path / "log"
    logged = _write_log(log_dir, tmp_path / "journal")
    assert len({part.split("/")[-2] for part in storage.parquet_parts(str(log_dir / "events"))}) == 5  # dates
    raw = prepare_dataset("canonical", str(log_dir), str(tmp_path / "raw"), ShopConfig())
    assert raw.catalogue_uri == str(log_dir / "catalogue.parquet")
    assert raw.events_uri == str(log_dir / "events")

    out = tmp_path / "ingested"
    summary = ingest(raw.catalogue_uri, raw.events_uri, str(out), CONFIG)
    assert summary.event_rows == len(logged) and summary.quarantined == {}
    accepted = pd.concat([pd.read_parquet(out / artifacts.TRAIN_EVENTS_FILE),
                          pd.read_parquet(out / artifacts.HOLDOUT_EVENTS_FILE)], ignore_index=True)
    expected = [(e["customer_id"], e["product_id"], e["event_type"], round(e["timestamp"] * 1_000_000), e["weight"])
                for e in logged]
    assert _keys(accepted) == sorted(expected)
    assert summary.train_events > 0 and summary.holdout_events > 0


def test_an_events_file_is_still_preferred_to_the_folder(tmp_path):
    log_dir = tmp_path / "log"
    _write_log(log_dir, tmp_path / "journal")
    pd.DataFrame({"customer_id": ["C1"], "product_id": ["P1"], "event_type": ["click"],
                  "timestamp": ["2026-01-01T00:00:00Z"]}).to_csv(log_dir / "events.csv", index=False)
    assert canonical_files(str(log_dir)).events_uri == str(log_dir / "events.csv")


def test_an_events_folder_without_parts_is_a_clear_error(tmp_path):
    (tmp_path / "events" / "date=2026-01-01").mkdir(parents=True)
    (tmp_path / "events" / "date=2026-01-01" / ".part-x.parquet.tmp").write_bytes(b"half")  # not a part
    CATALOGUE.to_parquet(tmp_path / "catalogue.parquet", index=False)
    with pytest.raises(FileNotFoundError, match=r"events holds no Parquet parts"):
        canonical_files(str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"events holds no Parquet parts"):
        storage.read_table(str(tmp_path / "events"))


def test_no_events_at_all_names_the_folder_too(tmp_path):
    CATALOGUE.to_parquet(tmp_path / "catalogue.parquet", index=False)
    with pytest.raises(FileNotFoundError, match=r"neither events.parquet nor events.csv, nor an events/ folder"):
        canonical_files(str(tmp_path))
