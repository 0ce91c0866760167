"""Progress lines for long steps, in one recognisable form (``... message``).

They go to stdout, where the KFP task log (and the local runner's console filter) picks them up.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def step(message: str) -> Iterator[None]:
    """Announce a step and report its wall time when it ends."""
    print(f"... {message}", flush=True)
    started = time.perf_counter()
    yield
    print(f"... {message}: done in {time.perf_counter() - started:.1f} s", flush=True)
