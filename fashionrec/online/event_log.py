"""The shop's append-only log of events and impressions: the next training run's input, as it is.

Why: what the shop sees (events) and what it showed (impressions) is the only record of behaviour the
next model can learn from, so an event the service acknowledged must never be lost, and never counted
twice, even when the process is killed (``kill -9``, OOM, a node going away) at any instant. And the
log must be training input without a conversion job: ``<log_dir>/events/`` is a folder of Parquet
parts in the canonical events schema, which ``fashionrec pipeline run --dataset canonical --data-dir
<log_dir>`` reads directly (next to the ``catalogue.parquet`` the service writes there).

Contract:

- :meth:`EventLog.append` returns only once its records are on local disk: one JSON line per call in
  the kind's journal (``<journal_dir>/<kind>.jsonl``), written with a single ``write`` and ``fsync`` ed
  (the journal folder too when the file is created). A batch is one line, so it is all-or-nothing: a
  kill mid-write leaves a torn last line, which was never acknowledged and is skipped on recovery.
  Records are checked against the kind's schema before anything is written (ValueError / TypeError),
  so an acknowledged record can always be rolled. Cost: one ``fsync`` per call, under a lock. A line is
  a JSON array of the batch's records; a missing score (NaN) is written as ``null`` and read back as NaN,
  and other numbers must be finite.
- :meth:`EventLog.roll` turns journals into Parquet parts
  ``<log_dir>/<kind>/date=YYYY-MM-DD/part-<UTC time>-<uuid>.parquet``, one per UTC date present (the
  date of each record's ``timestamp``), in the order the records were appended. Steps: (1) rename the
  active journal to ``<kind>.<UTC time>-<uuid>.sealed.jsonl`` (and fsync the folder), so appends go
  on into a fresh journal; (2) write each part completely under a name derived from the sealed
  journal (locally a temporary file, fsynced, renamed into place; on gs:// one upload that appears
  whole or not at all); (3) delete the sealed journal. A kill before (3) leaves the sealed journal;
  re-rolling it writes the same part names again (overwriting, never adding), so no record is lost
  or duplicated whatever the kill point.
- A roll parses a journal with Arrow's JSON reader, which runs without the GIL: the service's pages go on
  while a journal of thousands of impressions is read. A journal Arrow cannot take whole (a torn line,
  a record that is not of the kind) is read line by line instead, with the same result for its whole
  batches.
- A roll that fails (gs:// unreachable) raises and keeps its sealed journal; :meth:`EventLog.roll_if_due`
  retries it at every call until it succeeds, while appends go on journalling locally. :meth:`close`
  rolls everything; if that fails, the journals stay for the next process's recovery.
- On construction, :meth:`EventLog.recover` seals and rolls every journal a killed process left (so
  a log_dir that cannot be written makes the constructor raise). Lines that are not a whole batch of
  valid records (torn) are skipped and counted in :attr:`EventLog.torn_lines`, never fatal.
- One process owns a ``journal_dir`` (an exclusive ``flock`` on ``<journal_dir>/.lock``, released by
  the kernel when the owner dies); another EventLog on it raises :class:`JournalInUseError`. Each
  replica needs its own journal folder; replicas may share ``log_dir`` (part names are unique).
- Readers (:func:`fashionrec.storage.read_table` of ``<log_dir>/events``) list ``*.parquet`` parts,
  ignoring names starting with ``.`` or ``_`` (the local temporary files).

Timestamps arrive as epoch seconds (float) and are stored as ``timestamp[us, UTC]``.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import io
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from fashionrec import storage

EVENTS = "events"
IMPRESSIONS = "impressions"
UTC = pa.timestamp("us", tz="UTC")

SCHEMAS: dict[str, pa.Schema] = {
    EVENTS: pa.schema([
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("event_type", pa.string(), nullable=False),
        pa.field("timestamp", UTC, nullable=False),
        pa.field("weight", pa.float32(), nullable=False),
        pa.field("request_id", pa.string(), nullable=True),  # the page that showed the product, when known
        pa.field("experiment", pa.string(), nullable=True),  # the visitor's experiment and arm, when in one
        pa.field("arm", pa.string(), nullable=True),
        pa.field("device", pa.string(), nullable=True),  # the event's context, when posted (ingest's columns)
        pa.field("channel", pa.string(), nullable=True),
        pa.field("region", pa.string(), nullable=True),
        pa.field("local_time", pa.string(), nullable=True),  # the customer's wall clock, ISO 8601 as posted
    ]),
    IMPRESSIONS: pa.schema([
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("timestamp", UTC, nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("touchpoint", pa.string(), nullable=False),
        pa.field("model_version", pa.int64(), nullable=True),  # None: served without a model (fallback)
        pa.field("product_ids", pa.list_(pa.string()), nullable=False),
        pa.field("positions", pa.list_(pa.int32()), nullable=False),
        pa.field("scores", pa.list_(pa.float32()), nullable=False),  # NaN where there is no score
        pa.field("fallback", pa.bool_(), nullable=False),
        pa.field("experiment", pa.string(), nullable=True),
        pa.field("arm", pa.string(), nullable=True),
        # fashionrec.online.exploration: each product's probability of being shown there (None: not model-ranked)
        pa.field("propensities", pa.list_(pa.float32()), nullable=True),
        pa.field("explored_slot", pa.int32(), nullable=True),  # the randomised slot (1-based), if any
        pa.field("shuffled_slots", pa.int32(), nullable=True),  # how many leading slots were shuffled, if any
        pa.field("device", pa.string(), nullable=True),  # the page's context, when given (fashionrec.online.context)
        pa.field("region", pa.string(), nullable=True),
        pa.field("local_time", pa.string(), nullable=True),  # the customer's wall clock, ISO 8601 as given
    ]),
}
KINDS = tuple(SCHEMAS)

LOCK_FILE = ".lock"
ACTIVE_SUFFIX = ".jsonl"
SEALED_SUFFIX = ".sealed.jsonl"
MICROS = 1_000_000
# What timestamp[us] and a date= folder can hold: years 1..9999.
EARLIEST_SECONDS = -62_135_596_800.0
LATEST_SECONDS = 253_402_300_800.0
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class JournalInUseError(RuntimeError):
    """Another EventLog (in this or another process) holds the journal folder."""


class EventLog:
    """An append-only, crash-safe log of ``events`` and ``impressions`` (see the module notes)."""

    def __init__(self, log_dir: str, journal_dir: str, roll_records: int, roll_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        if roll_records < 1 or not roll_seconds > 0:
            raise ValueError(f"roll_records must be >= 1 and roll_seconds > 0, got {roll_records}, {roll_seconds}")
        self.log_dir = log_dir.rstrip("/")
        self.journal_dir = os.path.abspath(journal_dir)
        self.roll_records = roll_records
        self.roll_seconds = roll_seconds
        self.clock = clock
        self.torn_lines = 0  # skipped journal lines (batches torn by a kill mid-write; never acknowledged)
        self._lock = threading.Lock()  # the active journals and their counters
        self._roll_lock = threading.Lock()  # one roll at a time: a sealed journal is rolled by one thread
        self._files: dict[str, int] = {}  # kind -> fd of the active journal, opened on first append
        self._counts = dict.fromkeys(KINDS, 0)  # records in the active journal
        self._oldest: dict[str, float | None] = dict.fromkeys(KINDS)  # clock time of its first record
        self._sealed = dict.fromkeys(KINDS, False)  # a sealed journal is waiting (a roll failed or is running)
        self._closed = False
        os.makedirs(self.journal_dir, exist_ok=True)
        self._lock_fd = _lock_folder(self.journal_dir)
        try:
            self.recover()
        except BaseException:
            self._release()
            raise

    # ------------------------------------------------------------------------------------------------
    # Writing

    def append(self, kind: str, records: Sequence[Mapping[str, object]]) -> None:
        """Journal ``records`` of ``kind``; durable (fsynced) when this returns. An empty batch is a no-op."""
        rows = [_normalise(kind, record) for record in records]  # raises before anything is written
        if not rows:
            return
        line = _journal_line(kind, rows)
        with self._lock:
            self._check_open()
            fd = self._active(kind)
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                _write_all(fd, line)
                os.fsync(fd)
            except BaseException:
                self._undo(kind, fd, start)
                raise
            self._counts[kind] += len(rows)
            if self._oldest[kind] is None:
                self._oldest[kind] = self.clock()

    def _active(self, kind: str) -> int:
        fd = self._files.get(kind)
        if fd is None:
            path = self._active_path(kind)
            created = not os.path.exists(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            if created:
                _fsync_folder(self.journal_dir)
            self._files[kind] = fd
        return fd

    def _undo(self, kind: str, fd: int, start: int) -> None:
        """After a failed write: cut the journal back to its last whole line, or, failing that, seal it so
        the next append starts a clean journal (a half line must never have records appended to it)."""
        try:
            os.ftruncate(fd, start)
            os.fsync(fd)
        except OSError:
            try:
                self._seal(kind)
            except OSError:
                pass  # the journal stays; recovery skips the torn line

    # ------------------------------------------------------------------------------------------------
    # Rolling

    def roll(self) -> list[str]:
        """Roll every kind's journal into Parquet parts; return the URIs of the parts written."""
        return self._roll(KINDS)

    def roll_if_due(self) -> list[str]:
        """Roll the kinds holding >= roll_records records, or whose oldest record came in roll_seconds
        ago or more, or with a sealed journal still waiting (a roll that failed is retried here)."""
        now = self.clock()
        with self._lock:
            due = [kind for kind in KINDS if self._sealed[kind] or self._counts[kind] >= self.roll_records
                   or (self._oldest[kind] is not None and now - self._oldest[kind] >= self.roll_seconds)]
        return self._roll(due) if due else []

    def pending(self, kind: str) -> int:
        """Records of ``kind`` in the active journal (appended, not yet rolled)."""
        with self._lock:
            return self._counts[kind]

    def _roll(self, kinds: Sequence[str]) -> list[str]:
        with self._roll_lock:
            with self._lock:
                self._check_open()
                for kind in kinds:
                    self._seal(kind)
            return [uri for kind in kinds for uri in self._roll_sealed(kind)]

    def _seal(self, kind: str) -> str | None:
        """Rename the active journal (if any) to a sealed one; appends go on into a fresh journal. Caller
        holds ``_lock``."""
        fd = self._files.pop(kind, None)
        if fd is not None:
            os.close(fd)
        self._counts[kind], self._oldest[kind] = 0, None
        active = self._active_path(kind)
        if not os.path.exists(active):
            return None
        if os.path.getsize(active) == 0:
            os.remove(active)
            return None
        sealed = os.path.join(self.journal_dir, f"{kind}.{self._stamp()}{SEALED_SUFFIX}")
        os.rename(active, sealed)
        _fsync_folder(self.journal_dir)  # durable before any part names the stamp
        self._sealed[kind] = True
        return sealed

    def _roll_sealed(self, kind: str) -> list[str]:
        """Write the parts of every sealed journal of ``kind`` (oldest first), then delete the journal."""
        written = []
        while names := self._sealed_names(kind):  # listed again: a failed append may have sealed one meanwhile
            for name in names:
                path = os.path.join(self.journal_dir, name)
                stamp = name[len(kind) + 1:-len(SEALED_SUFFIX)]
                for date, table in _tables_by_date(kind, self._journal_table(kind, path)):
                    uri = storage.join(self.log_dir, kind, f"date={date.isoformat()}", f"part-{stamp}.parquet")
                    _write_part(table, uri)
                    written.append(uri)
                os.remove(path)  # only now: until here a re-roll rewrites the same part names
                _fsync_folder(self.journal_dir)
        with self._lock:
            self._sealed[kind] = False
        return written

    def _journal_table(self, kind: str, path: str) -> pa.Table:
        """A journal's records, in order, in the kind's journal types (:func:`_journal_schema`): parsed by
        Arrow when every line is a whole batch of the kind's records, else line by line."""
        with open(path, "rb") as stream:
            data = stream.read()
        table = _parsed_journal(kind, data)
        if table is None:
            table = _rows_table(kind, self._read_journal(kind, data))
        return table

    def _read_journal(self, kind: str, data: bytes) -> list[dict[str, object]]:
        """The records of a journal's bytes, in order. A line that is not a whole batch of valid records (torn by
        a kill mid-write, so never acknowledged) is skipped and counted: it must not block the journal."""
        rows: list[dict[str, object]] = []
        for line in io.BytesIO(data):  # split at b"\n" only, as the journal's lines end
            try:
                batch = json.loads(line.decode("utf-8"))
                if not line.endswith(b"\n") or not isinstance(batch, list):
                    raise ValueError("not a whole batch")
                good = [_normalise(kind, row) for row in batch]
            except (ValueError, TypeError):  # undecodable, torn JSON, not records of this kind
                self.torn_lines += 1
                continue
            rows.extend(good)
        return rows

    # ------------------------------------------------------------------------------------------------
    # Recovery and shutdown

    def recover(self) -> list[str]:
        """Seal and roll whatever journals are here (a killed process's); return the parts written."""
        with self._lock:
            for kind in KINDS:
                if kind not in self._files:  # only journals no live append is writing to
                    self._seal(kind)
                self._sealed[kind] = self._sealed[kind] or bool(self._sealed_names(kind))
        return self._roll([kind for kind in KINDS if self._sealed[kind]])

    def close(self) -> list[str]:
        """Roll everything, then let go of the journal folder. Idempotent."""
        if self._closed:
            return []
        try:
            written = self.roll()
        finally:
            with self._lock:
                self._closed = True
                for fd in self._files.values():
                    os.close(fd)
                self._files.clear()
                self._release()
        return written

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the event log is closed")

    # ------------------------------------------------------------------------------------------------
    # Names

    def _active_path(self, kind: str) -> str:
        return os.path.join(self.journal_dir, f"{kind}{ACTIVE_SUFFIX}")

    def _sealed_names(self, kind: str) -> list[str]:
        prefix = f"{kind}."
        return sorted(name for name in os.listdir(self.journal_dir)
                      if name.startswith(prefix) and name.endswith(SEALED_SUFFIX))

    def _stamp(self) -> str:
        """``<UTC time>-<uuid>``: sorts by time, unique across processes and restarts."""
        now = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)
        return f"{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}"


# ----------------------------------------------------------------------------------------------------
# Records


def _text(value: object, name: str) -> str:
    if type(value) is str and value.isascii():  # the common case, without the encode below
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be valid Unicode text (no lone surrogates), got {value!r}") from None
    return value


def _seconds(value: object, name: str) -> float:
    seconds = _number(value, name)
    if not EARLIEST_SECONDS <= seconds < LATEST_SECONDS:
        raise ValueError(f"{name} must be finite epoch seconds within years 1-9999, got {value!r}")
    return seconds


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _finite(value: object, name: str) -> float:
    number = _number(value, name)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def _score(value: object, name: str) -> float | None:
    """A finite score, or None for a missing one (NaN or None): the journal writes it as ``null``."""
    if value is None:
        return None
    number = _number(value, name)
    if math.isnan(number):
        return None
    if math.isinf(number):
        raise ValueError(f"{name} must be finite, or NaN for no score, got {value!r}")
    return number


def _integer(value: object, name: str, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"{name} out of range: {value}")
    return int(value)


def _flag(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _optional_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


def _optional(check: Callable[[object, str], object]) -> Callable[[object, str], object]:
    """``check``, or None for a None value."""
    return lambda value, name: None if value is None else check(value, name)


def _optional_int64(value: object, name: str) -> int | None:
    return None if value is None else _integer(value, name, INT64)


def _int32(value: object, name: str) -> int:
    return _integer(value, name, INT32)


def _list_of(item: Callable[[object, str], object],
             plain: Callable[[list[object]], bool]) -> Callable[[object, str], list[object]]:
    """A list whose elements pass ``item``. ``plain(elements)`` says at C speed that every element would pass
    ``item`` unchanged (an impression's lists are checked on every page shown: element by element they cost
    more than the rest of the record)."""
    def check(value: object, name: str) -> list[object]:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise TypeError(f"{name} must be a list, got {type(value).__name__}")
        elements = list(value)
        return elements if plain(elements) else [item(element, name) for element in elements]
    return check


def _plain_texts(elements: list[object]) -> bool:
    return set(map(type, elements)) <= {str} and "".join(elements).isascii()  # type: ignore[arg-type]


def _plain_int32s(elements: list[object]) -> bool:
    return set(map(type, elements)) <= {int} and (
        not elements or (INT32[0] <= min(elements) and max(elements) <= INT32[1]))  # type: ignore[type-var]


def _plain_scores(elements: list[object]) -> bool:
    """Floats, all finite: a finite sum has no infinity or NaN in it (a sum that overflows only sends the list
    through the element-wise check)."""
    return set(map(type, elements)) <= {float} and math.isfinite(sum(elements))  # type: ignore[arg-type]


FIELD_CHECKS: dict[str, dict[str, Callable[[object, str], object]]] = {
    EVENTS: {"customer_id": _text, "product_id": _text, "event_type": _text, "timestamp": _seconds,
             "weight": _finite, "request_id": _optional_text, "experiment": _optional_text, "arm": _optional_text,
             "device": _optional_text, "channel": _optional_text, "region": _optional_text,
             "local_time": _optional_text},
    IMPRESSIONS: {"request_id": _text, "timestamp": _seconds, "customer_id": _text, "touchpoint": _text,
                  "model_version": _optional_int64, "product_ids": _list_of(_text, _plain_texts),
                  "positions": _list_of(_int32, _plain_int32s), "scores": _list_of(_score, _plain_scores),
                  "fallback": _flag,
                  "experiment": _optional_text, "arm": _optional_text,
                  "propensities": _optional(_list_of(_score, _plain_scores)), "explored_slot": _optional(_int32),
                  "shuffled_slots": _optional(_int32), "device": _optional_text, "region": _optional_text,
                  "local_time": _optional_text},
}
# Fields added after logs were first written: a record without them (e.g. in a journal written by an older
# version, replayed after a crash) is read as null there.
OPTIONAL_FIELDS = {EVENTS: {"request_id", "experiment", "arm", "device", "channel", "region", "local_time"},
                   IMPRESSIONS: {"experiment", "arm", "propensities", "explored_slot", "shuffled_slots", "device",
                                 "region", "local_time"}}


def _normalise(kind: str, record: Mapping[str, object]) -> dict[str, object]:
    """The record as JSON-safe values of the schema's types, or ValueError/TypeError naming the field."""
    checks = FIELD_CHECKS.get(kind)
    if checks is None:
        raise ValueError(f"unknown record kind {kind!r}; choose one of {KINDS}")
    if not isinstance(record, Mapping):
        raise TypeError(f"a {kind} record must be a mapping, got {type(record).__name__}")
    missing = [name for name in checks if name not in record and name not in OPTIONAL_FIELDS[kind]]
    extra = [name for name in record if name not in checks]
    if missing or extra:
        raise ValueError(f"{kind} record: missing fields {missing}, unknown fields {extra}")
    return {name: check(record.get(name), f"{kind}.{name}") for name, check in checks.items()}


def _journal_line(kind: str, rows: list[dict[str, object]]) -> bytes:
    """One journal line: the normalised ``rows`` as a JSON array (orjson: the impressions of a second of pages
    are written in one call, and the standard library took 15 times as long, holding the GIL)."""
    try:
        return orjson.dumps(rows, option=orjson.OPT_APPEND_NEWLINE)
    except orjson.JSONEncodeError as error:  # not expected after _normalise: say which kind, not a bare TypeError
        raise ValueError(f"{kind} records cannot be written as JSON: {error}") from None


def _journal_schema(kind: str) -> pa.Schema:
    """The kind's fields as a journal line holds them: timestamps as epoch seconds and every float as a
    float64, all nullable (what may not be null is checked after parsing)."""
    def journal_type(field: pa.Field) -> pa.DataType:
        if field.name == "timestamp":
            return pa.float64()
        if field.type == pa.float32():
            return pa.float64()
        if field.type == pa.list_(pa.float32()):
            return pa.list_(pa.float64())
        return field.type
    return pa.schema([pa.field(field.name, journal_type(field)) for field in SCHEMAS[kind]])


JOURNAL_BATCH = "batch"  # each line is parsed by Arrow as {"batch": <the line>}: its JSON reader takes objects


def _parsed_journal(kind: str, data: bytes) -> pa.Table | None:
    """The records of a journal's bytes, parsed by Arrow, or None when some line is not a whole batch of
    valid records of the kind (a torn last line, anything the line-by-line reader would skip)."""
    if not data:
        return _rows_table(kind, [])
    if not data.endswith(b"\n"):
        return None
    opened = b'{"' + JOURNAL_BATCH.encode() + b'":'
    wrapped = opened + data[:-1].replace(b"\n", b"}\n" + opened) + b"}\n"
    schema = pa.schema([pa.field(JOURNAL_BATCH, pa.list_(pa.struct(list(_journal_schema(kind)))))])
    try:
        parsed = pa_json.read_json(
            pa.BufferReader(wrapped),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=max(len(wrapped), 1 << 20)),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"))
    except pa.ArrowInvalid:
        return None
    batches = parsed.column(JOURNAL_BATCH)
    if batches.null_count:
        return None
    records = pa.concat_arrays([chunk.flatten() for chunk in batches.chunks]) if batches.num_chunks \
        else pa.array([], type=schema.field(JOURNAL_BATCH).type.value_type)
    if records.null_count:
        return None
    table = pa.Table.from_struct_array(records)
    return table if _valid_records(kind, table) else None


def _valid_records(kind: str, table: pa.Table) -> bool:
    """What :func:`_normalise` would also require of parsed records: no null where the schema has none (a
    missing score is the one null allowed inside a list), finite numbers, timestamps within years 1-9999."""
    for field in SCHEMAS[kind]:
        column = table.column(field.name)
        if not field.nullable and column.null_count:
            return False
        if pa.types.is_list(field.type):
            elements = pc.list_flatten(column)
            if pa.types.is_floating(field.type.value_type):
                if pc.any(pc.is_inf(elements)).as_py():
                    return False
            elif elements.null_count:
                return False
    seconds = table.column("timestamp")
    if not _all(pc.and_(pc.greater_equal(seconds, EARLIEST_SECONDS), pc.less(seconds, LATEST_SECONDS))):
        return False
    floats = [field.name for field in SCHEMAS[kind] if field.type == pa.float32()]
    return all(_all(pc.is_finite(table.column(name))) for name in floats)


def _all(flags: pa.ChunkedArray) -> bool:
    """Every flag true (nulls skipped; true for none at all)."""
    return bool(pc.all(flags, min_count=0).as_py())


def _rows_table(kind: str, rows: Sequence[Mapping[str, object]]) -> pa.Table:
    """Normalised records as a table of the kind's journal types."""
    return pa.Table.from_pylist(list(rows), schema=_journal_schema(kind))


def _tables_by_date(kind: str, records: pa.Table) -> list[tuple[dt.date, pa.Table]]:
    """The records (in journal types) in the kind's schema, one table per UTC date of their timestamps, dates
    ascending, rows in journal order. Seconds become microseconds rounded half to even, as Python's round."""
    schema = SCHEMAS[kind]
    micros = pc.round(pc.multiply(records.column("timestamp"), MICROS), round_mode="half_to_even")
    stamps = pc.cast(micros, pa.int64()).cast(UTC)
    columns = [stamps if field.name == "timestamp" else _in_schema(records.column(field.name), field.type)
               for field in schema]
    table = pa.Table.from_arrays(columns, schema=schema)
    dates = pc.cast(stamps, pa.date32())
    return [(date, table.filter(pc.equal(dates, pa.scalar(date, pa.date32()))))
            for date in sorted(pc.unique(dates).to_pylist())]


def _in_schema(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | pa.Array:
    """A journal column in the schema's type; a list of floats has its missing scores (null) as NaN."""
    column = column.cast(target)
    if not (pa.types.is_list(target) and pa.types.is_floating(target.value_type)):
        return column
    lists = column.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(lists), 0)
    offsets = pa.concat_arrays([pa.array([0], pa.int32()), pc.cumulative_sum(lengths).cast(pa.int32())])
    values = pc.fill_null(pc.list_flatten(lists), pa.scalar(math.nan, target.value_type))
    return pa.ListArray.from_arrays(offsets, values, type=target, mask=lists.is_null())


# ----------------------------------------------------------------------------------------------------
# Files


def _write_part(table: pa.Table, uri: str) -> None:
    """Write a part completely or not at all (a reader never sees half a part)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer)
    data = buffer.getvalue().to_pybytes()
    if storage.is_gcs(uri):
        with storage.open_output(uri) as stream:  # one upload, on close
            stream.write(data)
        return
    path = os.path.abspath(uri.removeprefix(storage.FILE_PREFIX))
    folder = os.path.dirname(path)
    created = []  # new folders, deepest first: each is fsynced in its parent
    probe = folder
    while not os.path.isdir(probe):
        created.append(probe)
        probe = os.path.dirname(probe)
    os.makedirs(folder, exist_ok=True)
    # Named after the part (one writer per part: the journal's owner), so a re-roll after a kill mid-write
    # overwrites and renames the half-written file instead of leaving it behind. Readers skip ".*" names.
    temporary = os.path.join(folder, f".{os.path.basename(path)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
    _fsync_folder(folder)
    for new in created:
        _fsync_folder(os.path.dirname(new))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_folder(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock_folder(path: str) -> int:
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JournalInUseError(f"{path} is held by another EventLog (one owner per journal folder)") from None
    return fd
