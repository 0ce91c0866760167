"""Reading Triton's Prometheus counters in tests.

Triton counts an ensemble request just after answering it, so a scrape taken right after the last answer
can miss it on a loaded machine; ``read_until`` reads again until the expected count is in (or a deadline
passes, and the caller's assert then reports what was counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def read_until(read: Callable[[], T], enough: Callable[[T], bool], within_s: float = 10.0) -> T:
    """``read()`` again every 0.1 s until ``enough`` of its value holds or ``within_s`` passes; the last value."""
    deadline = time.monotonic() + within_s
    while True:
        value = read()
        if enough(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
