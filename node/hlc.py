"""Hybrid logical clock: the stamps that order metadata writes across nodes and gateways.

A stamp is one 64-bit integer: milliseconds since the epoch in the high 48 bits, a counter
in the low 16. It never goes backwards on one process, it moves past every stamp it has
seen (so a write made after reading another's always wins over it), and it stays close to
wall time, so "last writer wins" means what an operator expects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class HybridClock:
    def __init__(self, now_ms: Callable[[], int] = wall_ms) -> None:
        self._now_ms = now_ms
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> int:
        """A stamp greater than every stamp this clock has issued or observed."""
        with self._lock:
            physical = self._now_ms() << COUNTER_BITS
            self._last = max(physical, self._last + 1)
            return self._last

    def observe(self, stamp: int) -> None:
        """Move past a stamp seen from elsewhere."""
        with self._lock:
            self._last = max(self._last, stamp)


def stamp_ms(stamp: int) -> int:
    return stamp >> COUNTER_BITS
