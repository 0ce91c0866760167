"""The shop's event log: journal, Parquet parts, kill -9 and recovery, on real files (and the GCS emulator)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fashionrec import storage
from fashionrec.online.event_log import EVENTS, IMPRESSIONS, SCHEMAS, EventLog, JournalInUseError
from fashionrec.online.events import ShopEvent

REPO_ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400.0
JAN_1 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ROLL_RECORDS = 37
# (ACKs before the kill, seconds from that ACK to the kill): a few hundred acknowledged appends per round.
# Each child rolls right after its 37th, 74th, ... ACK, so a kill at or just after such an ACK lands inside
# a roll: a sealed journal, parts half written (a probe: a roll that deleted its journal before writing the
# parts lost events in most runs of the third round); 250 is mid-journal.
KILLS = ((ROLL_RECORDS * 4, 0.0), (250, 0.0), (ROLL_RECORDS * 5, 0.001), (ROLL_RECORDS * 3, 0.002))
CHILD_TIMEOUT_S = 60.0


def _event(i: int, timestamp: float) -> dict[str, object]:
    return {"customer_id": f"C{i}", "product_id": f"P{i % 7}", "event_type": "click", "timestamp": timestamp,
            "weight": 1.5}


class FakeClock:
    def __init__(self, now: float = JAN_1) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[str, str]:
    return str(tmp_path / "log"), str(tmp_path / "journal")


def _parts(log_dir: str, kind: str = EVENTS) -> list[str]:
    return storage.parquet_parts(storage.join(log_dir, kind))


def _relative(log_dir: str, parts: list[str]) -> list[str]:
    return [part[len(log_dir) + 1:] for part in parts]


def _journal_files(journal_dir: str) -> list[str]:
    return sorted(name for name in os.listdir(journal_dir) if name != ".lock")


def test_append_and_roll_write_date_partitions_with_the_canonical_schema(dirs):
    log_dir, journal_dir = dirs
    records = [_event(1, JAN_1 + 10.25), _event(2, JAN_1 + DAY + 0.5), _event(3, JAN_1 + 3600.000001)]
    log = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    log.append(EVENTS, records[:1])
    log.append(EVENTS, records[1:])
    assert log.pending(EVENTS) == 3
    written = log.roll()
    assert log.pending(EVENTS) == 0 and log.roll() == []
    rel = _relative(log_dir, written)
    assert [path.rsplit("/", 1)[0] for path in rel] == ["events/date=2026-01-01", "events/date=2026-01-02"]
    assert all(re.fullmatch(r"part-\d{8}T\d{12}Z-[0-9a-f]{32}\.parquet", path.rsplit("/", 1)[1]) for path in rel)
    assert written[0].rsplit("/", 1)[1] == written[1].rsplit("/", 1)[1]  # both parts come from one journal
    assert _parts(log_dir) == sorted(written)
    first = pq.read_table(written[0])
    assert first.schema.equals(SCHEMAS[EVENTS])
    assert first.column("customer_id").to_pylist() == ["C1", "C3"]  # journal order within a date
    frame = storage.read_table(storage.join(log_dir, EVENTS))
    optional = ["request_id", "experiment", "arm", "device", "channel", "region", "local_time"]
    assert list(frame.columns) == ["customer_id", "product_id", "event_type", "timestamp", "weight", *optional]  # no `date`
    assert frame[optional].isna().all().all()  # records without them: null
    assert frame["customer_id"].tolist() == ["C1", "C3", "C2"]
    assert frame["timestamp"].tolist() == [pd.Timestamp("2026-01-01T00:00:10.25Z"),
                                           pd.Timestamp("2026-01-01T01:00:00.000001Z"),
                                           pd.Timestamp("2026-01-02T00:00:00.5Z")]
    assert str(frame["weight"].dtype) == "float32" and set(frame["weight"]) == {1.5}
    assert _journal_files(journal_dir) == []
    log.close()


def test_impressions_round_trip_with_null_model_version_and_nan_scores(dirs):
    log_dir, journal_dir = dirs
    shown = {"request_id": "r1", "timestamp": JAN_1 + 5.0, "customer_id": "C1", "touchpoint": "home",
             "model_version": 3, "product_ids": ["P1", "P2"], "positions": [0, 1], "scores": [0.5, float("nan")],
             "fallback": False}
    fallback = {**shown, "request_id": "r2", "model_version": None, "scores": [], "product_ids": [],
                "positions": [], "fallback": True}
    with EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0) as log:
        log.append(IMPRESSIONS, [shown, fallback])
    [part] = _parts(log_dir, IMPRESSIONS)
    table = pq.read_table(part)
    assert table.schema.equals(SCHEMAS[IMPRESSIONS])
    rows = table.to_pylist()
    assert rows[0]["model_version"] == 3 and rows[1]["model_version"] is None
    assert rows[0]["product_ids"] == ["P1", "P2"] and rows[0]["positions"] == [0, 1]
    assert rows[0]["scores"][0] == 0.5 and math.isnan(rows[0]["scores"][1])
    assert rows[1]["fallback"] is True and rows[1]["scores"] == []


def test_impressions_carry_the_pages_context_and_older_logs_read_as_without(dirs):
    """A page's context is logged with its impressions; a record without it (journalled by an older version)
    and a part written before the columns existed read as null beside the new ones."""
    log_dir, journal_dir = dirs
    shown = {"request_id": "r1", "timestamp": JAN_1 + 5.0, "customer_id": "C1", "touchpoint": "for_you",
             "model_version": 3, "product_ids": ["P1"], "positions": [1], "scores": [0.5], "fallback": False}
    context = {"device": "mobile", "region": "GB-LND", "local_time": "2026-01-01T01:00:05+01:00"}
    columns = list(context)
    older = pa.schema([field for field in SCHEMAS[IMPRESSIONS] if field.name not in columns])
    old_part = Path(log_dir) / IMPRESSIONS / "date=2025-12-31" / "part-20251231T000000000000Z-old.parquet"
    old_part.parent.mkdir(parents=True)
    yesterday = pd.Timestamp(JAN_1 - DAY, unit="s", tz="UTC")
    pq.write_table(pa.Table.from_pylist([{**shown, "request_id": "r0", "timestamp": yesterday}], schema=older), old_part)
    with EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0) as log:
        log.append(IMPRESSIONS, [{**shown, **context}, {**shown, "request_id": "r2"}])
    frame = storage.read_table(storage.join(log_dir, IMPRESSIONS)).set_index("request_id")
    assert frame.loc["r1", columns].tolist() == list(context.values())
    assert frame.loc[["r0", "r2"], columns].isna().all().all()


def test_bad_records_are_refused_before_anything_is_journalled(dirs):
    log_dir, journal_dir = dirs
    with EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0) as log:
        for bad in ({**_event(1, JAN_1), "timestamp": float("nan")}, {**_event(1, JAN_1), "customer_id": None},
                    {**_event(1, JAN_1), "extra": 1}, {"customer_id": "C1"}, {**_event(1, JAN_1), "weight": "1"},
                    {**_event(1, JAN_1), "weight": float("inf")}, {**_event(1, JAN_1), "weight": float("nan")}):
            with pytest.raises((TypeError, ValueError)):
                log.append(EVENTS, [_event(2, JAN_1), bad])
        # a lone surrogate (JSON's "\ud800" decodes to one) is not text Parquet can hold: refused by name
        with pytest.raises(ValueError, match="events.product_id must be valid Unicode"):
            log.append(EVENTS, [{**_event(1, JAN_1), "product_id": "P\ud800"}])
        shown = {"request_id": "r", "timestamp": JAN_1, "customer_id": "C", "touchpoint": "home", "model_version": 1,
                 "product_ids": ["P1"], "positions": [1], "scores": [float("inf")], "fallback": False}
        with pytest.raises(ValueError, match="impressions.scores must be finite, or NaN for no score"):
            log.append(IMPRESSIONS, [shown])
        for bad_list in ({"positions": [True]}, {"positions": [2**31]}, {"product_ids": ["P1", 1]},
                         {"propensities": ["0.5"]}):
            with pytest.raises((TypeError, ValueError)):
                log.append(IMPRESSIONS, [{**shown, "scores": [0.5], **bad_list}])
        with pytest.raises(ValueError, match="unknown record kind"):
            log.append("clicks", [_event(1, JAN_1)])
        assert log.pending(EVENTS) == 0
        assert _journal_files(journal_dir) == []


def test_concurrent_appends_and_rolls_log_every_event_once(dirs):
    log_dir, journal_dir = dirs
    log = EventLog(log_dir, journal_dir, roll_records=25, roll_seconds=60.0)

    def post(thread: int) -> None:
        for i in range(60):
            event = ShopEvent(f"C{thread}-{i}", "P1", "click", JAN_1 + i, 1.0)  # as the event API hands them over
            log.append(EVENTS, [event.as_record()])
            log.roll_if_due()

    threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    ids = storage.read_table(storage.join(log_dir, EVENTS))["customer_id"]
    assert sorted(ids) == sorted(f"C{n}-{i}" for n in range(4) for i in range(60))


def test_one_owner_per_journal_folder(dirs):
    log_dir, journal_dir = dirs
    log = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    with pytest.raises(JournalInUseError):
        EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    log.close()
    EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0).close()  # free again


def test_roll_if_due_by_count_and_by_age(dirs):
    log_dir, journal_dir = dirs
    clock = FakeClock()
    log = EventLog(log_dir, journal_dir, roll_records=3, roll_seconds=60.0, clock=clock)
    log.append(EVENTS, [_event(1, JAN_1), _event(2, JAN_1)])
    assert log.roll_if_due() == []
    log.append(EVENTS, [_event(3, JAN_1)])
    assert len(log.roll_if_due()) == 1  # 3 records: due by count
    assert log.pending(EVENTS) == 0

    clock.now += 100.0
    log.append(EVENTS, [_event(4, JAN_1)])  # the oldest unrolled record arrives now
    log.append(IMPRESSIONS, [{"request_id": "r", "timestamp": JAN_1, "customer_id": "C", "touchpoint": "home",
                              "model_version": 1, "product_ids": [], "positions": [], "scores": [],
                              "fallback": False}])
    clock.now += 59.0
    log.append(EVENTS, [_event(5, JAN_1)])
    assert log.roll_if_due() == []
    clock.now += 1.0
    written = log.roll_if_due()  # 60 s after the first of them: both kinds are due
    assert sorted(part.split("/")[-3] for part in written) == [EVENTS, IMPRESSIONS]
    assert storage.read_table(storage.join(log_dir, EVENTS))["customer_id"].tolist() == ["C1", "C2", "C3", "C4", "C5"]
    assert log.roll_if_due() == []
    log.close()


def test_a_torn_last_line_is_skipped_and_counted_on_recovery(dirs):
    log_dir, journal_dir = dirs
    os.makedirs(journal_dir)
    good = json.dumps([_event(1, JAN_1), _event(2, JAN_1 + 1)])
    torn = json.dumps([_event(3, JAN_1 + 2)])[:-7]  # a kill mid-write: no closing bracket, no newline
    Path(journal_dir, "events.jsonl").write_text(f"{good}\n{torn}")
    log = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    assert log.torn_lines == 1
    assert storage.read_table(storage.join(log_dir, EVENTS))["customer_id"].tolist() == ["C1", "C2"]
    assert _journal_files(journal_dir) == []
    log.append(EVENTS, [_event(4, JAN_1 + 3)])  # a fresh journal: nothing is appended to the torn line
    log.close()
    assert storage.read_table(storage.join(log_dir, EVENTS))["customer_id"].tolist() == ["C1", "C2", "C4"]

    # Lines no append of ours writes (not JSON, not records of the kind) are skipped too: they must never
    # block the journal (a roll that always failed would hold back every later record).
    lines = [json.dumps([_event(5, JAN_1)]).encode(), b"\xff", b'[{"customer_id": 1}]', b"[7]",
             json.dumps([_event(6, JAN_1)]).encode()]
    Path(journal_dir, "events.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    log = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    assert log.torn_lines == 3
    assert storage.read_table(storage.join(log_dir, EVENTS))["customer_id"].tolist() == ["C1", "C2", "C4", "C5", "C6"]
    assert _journal_files(journal_dir) == []
    log.close()


def _impression(i: int, timestamp: float, **fields: object) -> dict[str, object]:
    return {"request_id": f"r{i}", "timestamp": timestamp, "customer_id": f"C{i}", "touchpoint": "for_you",
            "model_version": i, "product_ids": [f"P{i}", "P\u00e9\U0001f600"], "positions": [1, 2],
            "scores": [0.25 * i, float("nan")], "fallback": False, **fields}


def _as_text(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), default=str, allow_nan=True)


def _rolled(log_dir: str, journal_dir: str, kind: str, journal: bytes) -> tuple[int, list[tuple[str, pa.Table]]]:
    """Recover a journal left in ``journal_dir``; its torn lines and each part's date folder and table."""
    Path(journal_dir).mkdir(parents=True, exist_ok=True)
    Path(journal_dir, f"{kind}.jsonl").write_bytes(journal)
    with EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0) as log:
        torn = log.torn_lines
    parts = storage.parquet_parts(storage.join(log_dir, kind))
    return torn, [(part.split("/")[-2], pq.read_table(part)) for part in parts]


@pytest.mark.parametrize("kind", [EVENTS, IMPRESSIONS])
def test_a_journal_rolls_to_the_same_parts_whether_arrow_parses_it_or_it_is_read_line_by_line(tmp_path, kind,
                                                                                              monkeypatch):
    """A roll parses a whole journal with Arrow (without the GIL) and falls back to reading it line by line
    when a line is torn. Both must give the same parts: dates split at UTC midnight (before 1970 too),
    microseconds rounded half to even as Python rounds, unicode, nulls, and a missing score as NaN."""
    # x.5 microseconds exactly, in binary: 2.5 us, and 0.5 us and 1.5 us past JAN_1 (2**-21 s is 0.48 us)
    stamps = [JAN_1 + 2**-21, 2.5e-6, JAN_1 - 1e-6, -DAY - 1.25, JAN_1 + 3 * 2**-21, JAN_1 + DAY + 0.25]
    if kind == EVENTS:
        records = [{**_event(i, stamp), "weight": 0.1 * i, "device": "mobile" if i % 2 else None}
                   for i, stamp in enumerate(stamps)]
    else:
        records = [_impression(i, stamp, propensities=[0.5, 1.0] if i % 2 else None,
                               model_version=None if i == 2 else i, device="tablet") for i, stamp in enumerate(stamps)]
    with EventLog(str(tmp_path / "writer-log"), str(tmp_path / "writer"), roll_records=100, roll_seconds=60.0) as log:
        log.append(kind, records[:2])
        log.append(kind, records[2:])
        whole = Path(tmp_path / "writer", f"{kind}.jsonl").read_bytes()
        log.append(kind, records[:1])  # a third line, to be torn below
        three = Path(tmp_path / "writer", f"{kind}.jsonl").read_bytes()
    torn_journal = three[:-5]  # the third batch, cut mid-write
    assert torn_journal.startswith(whole) and not torn_journal.endswith(b"\n")

    with monkeypatch.context() as patched:  # a whole journal is Arrow's to parse, never read line by line
        patched.setattr(EventLog, "_read_journal", lambda *_: pytest.fail("a whole journal was read line by line"))
        parsed = _rolled(str(tmp_path / "a"), str(tmp_path / "ja"), kind, whole)
    line_by_line = _rolled(str(tmp_path / "b"), str(tmp_path / "jb"), kind, torn_journal)
    assert parsed[0] == 0 and line_by_line[0] == 1
    assert [date for date, _ in parsed[1]] == ["date=1969-12-30", "date=1970-01-01", "date=2025-12-31",
                                               "date=2026-01-01", "date=2026-01-02"]
    assert [date for date, _ in line_by_line[1]] == [date for date, _ in parsed[1]]
    for (_, arrow_part), (_, python_part) in zip(parsed[1], line_by_line[1], strict=True):
        assert arrow_part.schema.equals(SCHEMAS[kind])
        assert python_part.schema.equals(SCHEMAS[kind])
        assert _as_text(arrow_part) == _as_text(python_part)  # as text, so that NaN equals NaN
    micros = [stamp.value // 1000 for _, part in parsed[1] for stamp in part.column("timestamp").to_pandas()]
    assert micros == [-86_401_250_000, 2, 1_767_225_599_999_999, 1_767_225_600_000_000, 1_767_225_600_000_002,
                      1_767_312_000_250_000]  # by date, then journal order; 2.5 and 0.5 us down to even, 1.5 up
    if kind == IMPRESSIONS:
        rows = [row for _, part in parsed[1] for row in part.to_pylist()]
        assert [row["product_ids"][1] for row in rows] == ["P\u00e9\U0001f600"] * 6
        assert all(math.isnan(row["scores"][1]) for row in rows)
        assert [row["model_version"] for row in rows] == [3, 1, None, 0, 4, 5]
        assert [row["propensities"] for row in rows] == [[0.5, 1.0], [0.5, 1.0], None, None, None, [0.5, 1.0]]


def test_a_journal_written_by_the_older_json_writer_still_rolls(dirs):
    """Before orjson, journals held NaN for a missing score (the standard library's JSON); a service upgraded
    after a crash recovers them as they are."""
    log_dir, journal_dir = dirs
    line = json.dumps([_impression(1, JAN_1)], separators=(",", ":"), allow_nan=True)
    assert "NaN" in line
    torn, [(date, part)] = _rolled(log_dir, journal_dir, IMPRESSIONS, f"{line}\n".encode())
    assert torn == 0 and date == "date=2026-01-01"
    scores = part.column("scores").to_pylist()[0]
    assert scores[0] == 0.25 and math.isnan(scores[1])


def test_a_crash_after_writing_parts_but_before_deleting_the_sealed_journal_does_not_duplicate(dirs):
    log_dir, journal_dir = dirs
    log = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    log.append(EVENTS, [_event(1, JAN_1), _event(2, JAN_1 + DAY)])
    with log._lock:  # the first step of roll(), then the parts of the second, as a killed roll leaves them
        sealed = log._seal(EVENTS)
    assert sealed is not None
    kept = Path(sealed).read_bytes()
    first = log._roll_sealed(EVENTS)
    Path(sealed).write_bytes(kept)  # as if killed before the delete
    log._release()  # as if killed: the kernel drops the lock

    again = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    assert _parts(log_dir) == sorted(first)  # the same part names, rewritten
    frame = storage.read_table(storage.join(log_dir, EVENTS))
    assert frame["customer_id"].tolist() == ["C1", "C2"]
    assert _journal_files(journal_dir) == []
    again.close()


def test_a_crash_while_writing_the_first_part_loses_nothing_and_leaves_nothing(dirs):
    log_dir, journal_dir = dirs
    log = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    log.append(EVENTS, [_event(1, JAN_1)])
    with log._lock:
        sealed = log._seal(EVENTS)
    assert sealed is not None
    log.append(EVENTS, [_event(2, JAN_1)])  # into a fresh active journal, beside the sealed one
    assert sorted(name.split(".")[-2] for name in _journal_files(journal_dir)) == ["events", "sealed"]
    stamp = os.path.basename(sealed).split(".")[1]
    half = Path(log_dir, EVENTS, "date=2026-01-01", f".part-{stamp}.parquet.tmp")  # killed mid-write
    half.parent.mkdir(parents=True)
    half.write_bytes(b"PAR1 half a part")
    with pytest.raises(FileNotFoundError, match="holds no Parquet parts"):
        storage.read_table(storage.join(log_dir, EVENTS))  # readers never take the temporary file for a part
    log._release()

    again = EventLog(log_dir, journal_dir, roll_records=100, roll_seconds=60.0)
    assert storage.read_table(storage.join(log_dir, EVENTS))["customer_id"].tolist() == ["C1", "C2"]
    names = os.listdir(half.parent)
    assert f"part-{stamp}.parquet" in names and not [name for name in names if name.endswith(".tmp")]
    again.close()


CHILD = textwrap.dedent("""
    import sys
    from fashionrec.online.event_log import EventLog

    log_dir, journal_dir, start, roll_records = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    log = EventLog(log_dir, journal_dir, roll_records=roll_records, roll_seconds=3600.0)
    print("READY", flush=True)
    i = start
    while True:
        log.append("events", [{"customer_id": f"C{i}", "product_id": "P1", "event_type": "click",
                               "timestamp": 1767225600.0 + i * 900.0, "weight": 1.0}])
        print(f"ACK {i}", flush=True)
        log.roll_if_due()
        i += 1
""")


def _run_and_kill(log_dir: str, journal_dir: str, start: int, acks_wanted: int, delay_s: float) -> list[int]:
    """Start a child appending one event at a time; SIGKILL it ``delay_s`` after its ``acks_wanted``-th ACK;
    return every ACK it printed."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, log_dir, journal_dir, str(start), str(ROLL_RECORDS)],
                             stdout=subprocess.PIPE, text=True, env=env, cwd=str(REPO_ROOT))
    acked: list[int] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith("ACK "):
                acked.append(int(line.split()[1]))
                if len(acked) >= acks_wanted:
                    break
        time.sleep(delay_s)
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=CHILD_TIMEOUT_S)  # ACKs already in the pipe count too
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    acked += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("ACK ")]
    assert child.returncode == -signal.SIGKILL
    assert len(acked) >= acks_wanted, "the child died before acknowledging enough events"
    return acked


def test_every_acknowledged_event_survives_kill_9_exactly_once(dirs):
    log_dir, journal_dir = dirs
    acknowledged: list[int] = []
    start = 0
    for acks_wanted, delay_s in KILLS:  # each child first recovers what the previous one left
        acked = _run_and_kill(log_dir, journal_dir, start, acks_wanted, delay_s)
        acknowledged += acked
        start = max(acked) + 10  # ids after the last ACK may or may not be logged; keep the rounds apart
    log = EventLog(log_dir, journal_dir, roll_records=ROLL_RECORDS, roll_seconds=3600.0)
    log.close()
    assert _journal_files(journal_dir) == []
    frame = storage.read_table(storage.join(log_dir, EVENTS))
    ids = frame["customer_id"].str[1:].astype(int)
    assert not ids.duplicated().any(), "an event was logged twice"
    missing = set(acknowledged) - set(ids)
    assert not missing, f"acknowledged events lost: {sorted(missing)[:10]}"
    assert len({part.split("/")[-2] for part in _parts(log_dir)}) > 1  # the events spanned several dates


def test_log_dir_on_gcs(gcs_emulator, tmp_path):
    log_dir = f"{gcs_emulator}/{uuid.uuid4().hex}/log"
    journal_dir = str(tmp_path / "journal")
    with EventLog(log_dir, journal_dir, roll_records=2, roll_seconds=60.0) as log:
        log.append(EVENTS, [_event(1, JAN_1), _event(2, JAN_1 + DAY)])
        written = log.roll_if_due()
        log.append(EVENTS, [_event(3, JAN_1 + 2 * DAY)])
    assert all(part.startswith(f"{log_dir}/events/date=2026-01-0") for part in written)
    parts = _parts(log_dir)
    assert len(parts) == 3 and set(written) < set(parts)
    assert pq.read_table(storage.open_input(parts[0])).schema.equals(SCHEMAS[EVENTS])
    frame = storage.read_table(storage.join(log_dir, EVENTS))
    assert frame["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert frame["timestamp"].iloc[2] == pd.Timestamp("2026-01-03", tz="UTC")
    assert _journal_files(journal_dir) == []
