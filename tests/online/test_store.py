"""The live customer-state store on its real backends: an SQLite file, and a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from fashionrec.config import OnlineConfig
from fashionrec.online.events import ShopEvent
from fashionrec.online import store as store_module
from fashionrec.online.store import CustomerStore, RedisStore, SQLiteStore, StoreUnavailable, open_store

T0 = 1_700_000_000.0
CUSTOMER = "customer:A"
SESSION = "session:A"


def event(product: str, timestamp: float, event_type: str = "click", customer: str = "A") -> ShopEvent:
    return ShopEvent(customer, product, event_type, timestamp, 1.0)


class Backend:
    """Makes stores that share one backend (the "replicas" of a test), and lets time pass for their expiry."""

    name = ""

    def store(self, max_events: int = 100) -> CustomerStore:
        raise NotImplementedError

    async def pass_time(self, seconds: float) -> None:
        raise NotImplementedError


class SQLiteBackend(Backend):
    name = "sqlite"

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "shop" / "customers.sqlite3")  # the store makes the folder
        self.now = T0

    def store(self, max_events: int = 100) -> CustomerStore:
        return SQLiteStore(self.path, max_events, clock=lambda: self.now)

    async def pass_time(self, seconds: float) -> None:
        self.now += seconds


class RedisBackend(Backend):
    name = "redis"

    def __init__(self, url: str) -> None:
        self.url, self.prefix = url, f"test-{uuid.uuid4().hex}:"  # each test's keys apart on the shared server

    def store(self, max_events: int = 100) -> CustomerStore:
        return RedisStore(self.url, max_events, self.prefix)

    async def pass_time(self, seconds: float) -> None:
        await asyncio.sleep(seconds)  # Redis expires keys on its own clock


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SQLiteBackend(tmp_path)
    return RedisBackend(request.getfixturevalue("redis_url"))


def run(work: Callable[[], object]) -> object:
    """Run the coroutine ``work()`` makes on a fresh event loop (stores are made inside it)."""
    return asyncio.run(work())


def test_history_returns_what_was_appended_oldest_first(backend: Backend):
    events = [event("p1", T0), event("p2", T0 + 5, "add_to_bag"), event("p1", T0 + 9, "purchase")]

    async def work():
        store = backend.store()
        try:
            await store.append(CUSTOMER, events[:2])
            await store.append(CUSTOMER, events[2:])
            return await store.history(CUSTOMER)
        finally:
            await store.close()

    assert run(work) == events


def test_unknown_key_has_an_empty_history(backend: Backend):
    async def work():
        store = backend.store()
        try:
            await store.append(CUSTOMER, [])  # nothing to remember: no key either
            return await store.history("customer:nobody"), await store.history(CUSTOMER)
        finally:
            await store.close()

    assert run(work) == ([], [])


def test_out_of_order_events_are_sorted_and_equal_timestamps_keep_arrival_order(backend: Backend):
    first = [event("late", T0 + 30), event("tie-1", T0 + 10), event("early", T0)]
    late_batch = [event("tie-2", T0 + 10), event("earliest", T0 - 100), event("tie-1", T0 + 10)]  # a repeat too

    async def work():
        store = backend.store()
        try:
            await store.append(CUSTOMER, first)
            await store.append(CUSTOMER, late_batch)
            return [e.product_id for e in await store.history(CUSTOMER)]
        finally:
            await store.close()

    assert run(work) == ["earliest", "early", "tie-1", "tie-2", "tie-1", "late"]


def test_trimming_keeps_the_newest_by_timestamp_not_by_arrival(backend: Backend):
    async def work():
        store = backend.store(max_events=3)
        try:
            await store.append(CUSTOMER, [event("t3", T0 + 3), event("t1", T0 + 1), event("t5", T0 + 5)])
            await store.append(CUSTOMER, [event("t2", T0 + 2), event("t4", T0 + 4)])  # posted late
            after_five = [e.product_id for e in await store.history(CUSTOMER)]
            await store.append(CUSTOMER, [event("t0", T0)])  # older than all it keeps: dropped at once
            after_six = [e.product_id for e in await store.history(CUSTOMER)]
            return after_five, after_six
        finally:
            await store.close()

    assert run(work) == (["t3", "t4", "t5"], ["t3", "t4", "t5"])


def test_trimming_among_equal_timestamps_keeps_the_later_arrivals(backend: Backend):
    async def work():
        store = backend.store(max_events=2)
        try:
            await store.append(CUSTOMER, [event("a", T0), event("b", T0)])
            await store.append(CUSTOMER, [event("c", T0)])
            return [e.product_id for e in await store.history(CUSTOMER)]
        finally:
            await store.close()

    assert run(work) == ["b", "c"]


def test_keys_are_isolated(backend: Backend):
    async def work():
        store = backend.store()
        try:
            await store.append(CUSTOMER, [event("mine", T0)])
            await store.append(SESSION, [event("theirs", T0, customer="session:A")], ttl_s=60)
            return await store.history(CUSTOMER), await store.history(SESSION), await store.history("customer:B")
        finally:
            await store.close()

    customer, session, other = run(work)
    assert [e.product_id for e in customer] == ["mine"]
    assert [e.product_id for e in session] == ["theirs"]
    assert other == []


def test_a_session_expires_after_its_ttl_and_a_customer_does_not(backend: Backend):
    async def work():
        store = backend.store()
        try:
            await store.append(SESSION, [event("s", T0, customer="session:A")], ttl_s=1)
            await store.append(CUSTOMER, [event("c", T0)])
            before = await store.history(SESSION)
            await backend.pass_time(1.2)
            expired, customer = await store.history(SESSION), await store.history(CUSTOMER)
            await store.append(SESSION, [event("new", T0 + 2, customer="session:A")], ttl_s=1)
            return before, expired, customer, await store.history(SESSION)
        finally:
            await store.close()

    before, expired, customer, restarted = run(work)
    assert [e.product_id for e in before] == ["s"]
    assert expired == []
    assert [e.product_id for e in customer] == ["c"]
    assert [e.product_id for e in restarted] == ["new"]  # the expired events do not come back


def test_each_append_renews_the_ttl(backend: Backend):
    async def work():
        store = backend.store()
        try:
            await store.append(SESSION, [event("s1", T0, customer="session:A")], ttl_s=2)
            await backend.pass_time(1.2)
            await store.append(SESSION, [event("s2", T0 + 1, customer="session:A")], ttl_s=2)
            await backend.pass_time(1.2)  # past the first append's expiry, within the second's
            renewed = [e.product_id for e in await store.history(SESSION)]
            await backend.pass_time(1.2)
            return renewed, await store.history(SESSION)
        finally:
            await store.close()

    assert run(work) == (["s1", "s2"], [])


def test_a_non_positive_ttl_is_refused(backend: Backend):
    async def work():
        store = backend.store()
        try:
            await store.append(SESSION, [event("s", T0)], ttl_s=0)
        finally:
            await store.close()

    with pytest.raises(ValueError, match="ttl_s"):
        run(work)


def test_two_replicas_see_each_others_appends(backend: Backend):
    async def work():
        one, two = backend.store(), backend.store()
        try:
            await one.append(CUSTOMER, [event("from-one", T0)])
            seen_by_two = await two.history(CUSTOMER)
            await two.append(CUSTOMER, [event("from-two", T0 + 1)])
            return seen_by_two, await one.history(CUSTOMER)
        finally:
            await one.close()
            await two.close()

    seen_by_two, seen_by_one = run(work)
    assert [e.product_id for e in seen_by_two] == ["from-one"]
    assert [e.product_id for e in seen_by_one] == ["from-one", "from-two"]


def test_concurrent_appends_from_two_replicas_lose_nothing_and_trim_exactly(backend: Backend):
    keep, per_replica = 10, 20
    timestamps = [T0 + i for i in range(2 * per_replica)]

    async def work():
        one, two = backend.store(max_events=keep), backend.store(max_events=keep)
        try:
            await asyncio.gather(*(store.append(CUSTOMER, [event(f"p{int(t - T0)}", t)])
                                   for t, store in zip(timestamps, [one, two] * per_replica)))
            return await one.history(CUSTOMER)
        finally:
            await one.close()
            await two.close()

    assert [e.timestamp for e in run(work)] == timestamps[-keep:]


def test_a_design_point_history_round_trips(backend: Backend):
    size = OnlineConfig().max_history_events  # 5,000
    # Out of order, with runs of equal timestamps: the stored order is by timestamp, then arrival.
    events = [event(f"p{i}", T0 + (i * 7919) % (size // 4), ("click", "purchase")[i % 2]) for i in range(size)]
    expected = sorted(events, key=lambda e: e.timestamp)  # stable: ties keep arrival order

    async def work():
        store = backend.store(max_events=size)
        try:
            await store.append(CUSTOMER, events)
            full = await store.history(CUSTOMER)
            await store.append(CUSTOMER, [event("newest", T0 + size)])
            return full, await store.history(CUSTOMER)
        finally:
            await store.close()

    full, after = run(work)
    assert full == expected
    assert after == [*expected[1:], event("newest", T0 + size)]


def test_sqlite_stores_in_two_processes_share_one_file(tmp_path: Path):
    path, per_process = str(tmp_path / "customers.sqlite3"), 40
    script = (
        "import asyncio, sys\n"
        "from fashionrec.online.events import ShopEvent\n"
        "from fashionrec.online.store import SQLiteStore\n"
        "async def main(offset):\n"
        f"    store = SQLiteStore({path!r}, 1000)\n"
        f"    for i in range({per_process}):\n"
        f"        batch = [ShopEvent('A', f'p{{offset + i}}', 'click', {T0} + offset + i, 1.0)]\n"
        "        await store.append('customer:A', batch)\n"
        "    await store.close()\n"
        "asyncio.run(main(int(sys.argv[1])))\n")
    processes = [subprocess.Popen([sys.executable, "-c", script, str(offset)]) for offset in (0, per_process)]
    assert [process.wait(timeout=120) for process in processes] == [0, 0]

    async def work():
        store = SQLiteStore(path, 1000)
        try:
            return await store.history(CUSTOMER)
        finally:
            await store.close()

    assert [e.product_id for e in run(work)] == [f"p{i}" for i in range(2 * per_process)]


def test_sqlite_expired_sessions_are_deleted_lazily(tmp_path: Path):
    backend = SQLiteBackend(tmp_path)

    async def work():
        store = backend.store()
        try:
            for name in ("x", "y"):
                await store.append(f"session:{name}", [event(name, T0, customer=f"session:{name}")], ttl_s=1)
            await backend.pass_time(2)
            await store.append(CUSTOMER, [event("c", T0)])  # sweeps the expired sessions
        finally:
            await store.close()

    run(work)
    with sqlite3.connect(backend.path) as connection:
        keys = {row[0] for row in connection.execute("SELECT DISTINCT key FROM events")}
    assert keys == {CUSTOMER}


def test_sqlite_reads_do_not_wait_for_a_write_in_progress(tmp_path: Path):
    """Another process holds the file's write lock, so the store's own append waits in its worker thread;
    a page's read still answers at once, with what was committed (reads run on the event loop, in WAL mode)."""
    backend = SQLiteBackend(tmp_path)

    async def work():
        store = backend.store()
        try:
            await store.append(CUSTOMER, [event("p1", T0)])
            other = sqlite3.connect(backend.path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO events (key, timestamp, record) VALUES ('customer:B', 0, x'00')")
            waiting = asyncio.create_task(store.append(CUSTOMER, [event("p2", T0 + 1)]))
            await asyncio.sleep(0.2)  # the append is in its thread, waiting for the lock
            history = await store.history(CUSTOMER)
            pending = not waiting.done()
            other.execute("ROLLBACK")
            other.close()
            await waiting
            return history, pending, await store.history(CUSTOMER)
        finally:
            await store.close()

    before, pending, after = run(work)
    assert [e.product_id for e in before] == ["p1"] and pending
    assert [e.product_id for e in after] == ["p1", "p2"]


def _counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of events each decode of stored records made (the store's own decoder, counted)."""
    decoded: list[int] = []
    decode = store_module._decode_all

    def counted(texts):
        decoded.append(len(texts))
        return decode(texts)

    monkeypatch.setattr(store_module, "_decode_all", counted)
    return decoded


def test_a_decoded_history_is_kept_until_any_replica_changes_it(backend: Backend, monkeypatch: pytest.MonkeyPatch):
    """Replica A reads, then B appends an event to A's full history of three (the trim keeps the count at
    three), then a session expires and comes back with one event: A reads every change, and an unchanged
    history twice with one decode, under one version (a page keeps what it builds under it)."""
    decoded = _counting_decodes(monkeypatch)

    async def work():
        a, b = backend.store(max_events=3), backend.store(max_events=3)
        try:
            await a.append(CUSTOMER, [event(f"p{i}", T0 + i) for i in range(3)])
            first, again = await a.history(CUSTOMER), await a.history(CUSTOMER)
            await b.append(CUSTOMER, [event("q", T0 + 10)])
            trimmed = await a.history(CUSTOMER)
            await a.append(SESSION, [event("s1", T0, customer=SESSION)], ttl_s=0.2)
            session_before = await a.history(SESSION)
            await backend.pass_time(0.4)
            expired = await a.history(SESSION)
            await b.append(SESSION, [event("s2", T0 + 11, customer=SESSION)], ttl_s=0.2)
            return first, again, trimmed, session_before, expired, await a.history(SESSION)
        finally:
            await a.close()
            await b.close()

    first, again, trimmed, session_before, expired, session_after = run(work)
    assert [e.product_id for e in first] == ["p0", "p1", "p2"] and again == first
    assert all(type(e) is ShopEvent for e in again)
    assert decoded == [3, 3, 1, 1]  # first (not again), trimmed, the session before and after its expiry
    assert again.version == first.version and trimmed.version != first.version
    assert [e.product_id for e in trimmed] == ["p1", "p2", "q"]
    assert [e.product_id for e in session_before] == ["s1"] and expired == []
    assert [e.product_id for e in session_after] == ["s2"] and session_after.version != session_before.version


def test_sqlite_keeps_at_most_its_cached_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Five events kept at most: A's three, then B's three do not fit beside them, so A's, the longest kept,
    are dropped and read again from the file; then B's go for A's."""
    path = str(tmp_path / "customers.sqlite3")
    decoded = _counting_decodes(monkeypatch)

    async def work():
        store = SQLiteStore(path, 10, cached_events=5)
        try:
            for key in ("customer:A", "customer:B"):
                await store.append(key, [event(f"{key}{i}", T0 + i) for i in range(3)])
            a, b = await store.history("customer:A"), await store.history("customer:B")
            b_again, a_again = await store.history("customer:B"), await store.history("customer:A")
            return a, b, b_again, a_again, await store.history("customer:B")
        finally:
            await store.close()

    a, b, b_again, a_again, b_third = run(work)
    assert a == a_again and b == b_again == b_third
    assert decoded == [3, 3, 3, 3]  # A, B, not B again (kept), A again (dropped for B), B (dropped for A)


def test_a_stored_history_makes_its_events_from_the_kept_rows():
    rows = (("A", "p1", "click", T0, 1.0), ("A", "p2", "purchase", T0 + 1, 4.0))
    history = store_module.StoredHistory(rows, ("customer:A", 2, 7, None))
    assert len(history) == 2 and history.version == ("customer:A", 2, 7, None)
    assert history[1] == ShopEvent("A", "p2", "purchase", T0 + 1, 4.0) and history[1].event_type == "purchase"
    assert history[:1] == [ShopEvent("A", "p1", "click", T0, 1.0)] and [e.product_id for e in history] == ["p1", "p2"]
    assert history == [ShopEvent(*row) for row in rows] and history != [ShopEvent(*rows[0])]


def test_sqlite_history_of_an_unreachable_file_raises_store_unavailable(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    async def work():
        store = SQLiteStore(str(blocker / "customers.sqlite3"), 10)
        try:
            await store.history(CUSTOMER)
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable, match="sqlite"):
        run(work)


def test_sqlite_unreachable_file_raises_store_unavailable(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    path = str(blocker / "customers.sqlite3")

    async def work():
        store = SQLiteStore(path, 10)
        try:
            await store.ping()
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable, match="sqlite") as raised:
        run(work)
    assert path in str(raised.value) and "\n" not in str(raised.value)


def test_redis_keeps_one_sorted_set_per_key_and_expires_sessions_natively(redis_url: str):
    prefix = f"test-{uuid.uuid4().hex}:"

    async def work():
        store = RedisStore(redis_url, 10, prefix)
        try:
            await store.append(CUSTOMER, [event("c", T0)])
            await store.append(SESSION, [event("s", T0, customer="session:A")], ttl_s=60)
        finally:
            await store.close()

    run(work)
    client = redis.Redis.from_url(redis_url)
    try:
        assert sorted(client.scan_iter(f"{prefix}*")) == [f"{prefix}history:{CUSTOMER}".encode(),
                                                          f"{prefix}history:{SESSION}".encode()]
        assert client.type(f"{prefix}history:{CUSTOMER}") == b"zset"
        assert client.ttl(f"{prefix}history:{CUSTOMER}") == -1  # never expires
        assert 0 < client.ttl(f"{prefix}history:{SESSION}") <= 60
    finally:
        client.close()


def test_redis_on_a_closed_port_raises_store_unavailable_naming_the_address(closed_port: int):
    port = closed_port

    async def attempt(call: str) -> StoreUnavailable:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", 10, "test:")
        try:
            with pytest.raises(StoreUnavailable) as raised:
                await (store.ping() if call == "ping" else store.history(CUSTOMER) if call == "history"
                       else store.append(CUSTOMER, [event("p", T0)]))
            return raised.value
        finally:
            await store.close()

    for call in ("ping", "history", "append"):
        message = str(asyncio.run(attempt(call)))
        assert f"127.0.0.1:{port}" in message and "redis" in message and "\n" not in message


def test_redis_going_down_raises_store_unavailable(own_redis_server):
    async def work():
        store = RedisStore(own_redis_server.url, 10, "test:")
        try:
            await store.append(CUSTOMER, [event("p", T0)])
            await store.ping()
            own_redis_server.stop()
            errors = []
            for call in (store.ping, lambda: store.history(CUSTOMER)):
                with pytest.raises(StoreUnavailable) as raised:
                    await call()
                errors.append(str(raised.value))
            return errors
        finally:
            await store.close()

    for message in run(work):
        assert f"127.0.0.1:{own_redis_server.port}" in message


def test_redis_credentials_stay_out_of_the_message(closed_port: int):
    port = closed_port

    async def work():
        store = RedisStore(f"redis://user:s3cret@127.0.0.1:{port}/0", 10, "test:")
        try:
            await store.ping()
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable) as raised:
        run(work)
    assert "s3cret" not in str(raised.value) and f"127.0.0.1:{port}/0" in str(raised.value)


def test_redis_store_uses_a_given_client_and_leaves_it_open(redis_url: str):
    async def work():
        client = aioredis.Redis.from_url(redis_url, decode_responses=True)  # str replies work too
        store = RedisStore("redis://ignored:1/0", 10, f"test-{uuid.uuid4().hex}:", client=client)
        await store.append(CUSTOMER, [event("p", T0)])
        history = await store.history(CUSTOMER)
        await store.close()
        assert await client.ping()  # still usable
        await client.aclose()
        return history

    assert [e.product_id for e in run(work)] == ["p"]


def test_open_store_picks_the_configured_backend(tmp_path: Path, redis_url: str):
    base = OnlineConfig()
    sqlite_config = replace(base, store="sqlite", sqlite_path=str(tmp_path / "customers.sqlite3"))
    redis_config = replace(base, store="redis", redis_url=redis_url, redis_key_prefix=f"test-{uuid.uuid4().hex}:")

    async def work(config: OnlineConfig):
        store = open_store(config)
        try:
            await store.ping()
            await store.append(CUSTOMER, [event("p", T0)])
            return type(store), await store.history(CUSTOMER)
        finally:
            await store.close()

    assert asyncio.run(work(sqlite_config)) == (SQLiteStore, [event("p", T0)])
    assert asyncio.run(work(redis_config)) == (RedisStore, [event("p", T0)])
    assert isinstance(open_store(sqlite_config), CustomerStore)
