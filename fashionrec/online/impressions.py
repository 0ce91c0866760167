"""What the shop showed, kept in memory and written to the event log a batch at a time.

Why batch: impressions are acknowledged to no one, so one append (one ``fsync``) serves every page shown
since the last flush instead of one each; the service flushes every second and at shutdown.

Contract: every impression added before :meth:`ImpressionBuffer.close` returns is in the log (or its append
raised, which the flush's caller logs). A flush cancelled mid-append (the background task cancelled at
shutdown) leaves its append running in a thread; :meth:`close` waits for it, so the log is never closed under
it and the last second's impressions are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from fashionrec.online.event_log import IMPRESSIONS, EventLog


class ImpressionBuffer:
    """Impression records not yet in ``log``."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self._pending: list[Mapping[str, object]] = []
        self._appending: set[asyncio.Future[None]] = set()  # appends still running in their threads

    def add(self, records: Iterable[Mapping[str, object]]) -> None:
        self._pending.extend(records)

    async def flush(self) -> int:
        """Append everything added since the last flush in one call; returns how many records. The append
        runs on in its thread if this is cancelled (see :meth:`close`)."""
        pending, self._pending = self._pending, []
        if pending:
            appending = asyncio.ensure_future(asyncio.to_thread(self.log.append, IMPRESSIONS, pending))
            self._appending.add(appending)
            appending.add_done_callback(self._appending.discard)
            await asyncio.shield(appending)
        return len(pending)

    async def close(self) -> None:
        """Wait for every earlier flush's append (one that failed has been reported to its flush's caller),
        then flush what is left."""
        await asyncio.gather(*self._appending, return_exceptions=True)
        await self.flush()
