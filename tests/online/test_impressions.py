"""The impression buffer on a real event log: a flush cancelled mid-append, as the background task is at
shutdown, loses nothing, because closing waits for the append still running in its thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fashionrec import storage
from fashionrec.online.event_log import IMPRESSIONS, EventLog
from fashionrec.online.impressions import ImpressionBuffer

SHOWN = 20_000  # enough that the append is still checking records when the flush is cancelled


def _impression(i: int) -> dict[str, object]:
    return {"request_id": f"r{i}", "timestamp": 1_796_600_000.0 + i, "customer_id": f"C{i % 50}",
            "touchpoint": "for_you", "model_version": 1, "product_ids": [f"P{i}", f"P{i + 1}"],
            "positions": [1, 2], "scores": [0.5, 0.25], "fallback": False}


def _logged(log_dir: Path) -> list[str]:
    return sorted(storage.read_table(str(log_dir / IMPRESSIONS))["request_id"])


def test_a_flush_cancelled_at_shutdown_still_lands_every_impression(tmp_path: Path) -> None:
    log = EventLog(str(tmp_path / "log"), str(tmp_path / "journal"), roll_records=10**9, roll_seconds=3600.0)

    async def shut_down_mid_flush() -> int:
        buffer = ImpressionBuffer(log)
        buffer.add(_impression(i) for i in range(SHOWN))
        flushing = asyncio.create_task(buffer.flush())
        await asyncio.sleep(0.01)  # the append has started in its thread
        flushing.cancel()
        buffer.add([_impression(SHOWN)])  # a page shown after the cancelled flush took its batch
        await buffer.close()
        appending = flushing.cancelled()
        await asyncio.to_thread(log.close)  # as the service's shutdown does next
        return appending

    assert asyncio.run(shut_down_mid_flush())  # the flush really was cut short
    assert _logged(tmp_path / "log") == sorted(f"r{i}" for i in range(SHOWN + 1))


def test_flushes_append_what_was_added_since_the_last_one(tmp_path: Path) -> None:
    async def two_flushes(log: EventLog) -> list[int]:
        buffer = ImpressionBuffer(log)
        buffer.add([_impression(0), _impression(1)])
        first = await buffer.flush()
        buffer.add([_impression(2)])
        return [first, await buffer.flush(), await buffer.flush()]

    with EventLog(str(tmp_path / "log"), str(tmp_path / "journal"), roll_records=10**9, roll_seconds=3600.0) as log:
        assert asyncio.run(two_flushes(log)) == [2, 1, 0]
        assert log.pending(IMPRESSIONS) == 3
    assert _logged(tmp_path / "log") == ["r0", "r1", "r2"]
