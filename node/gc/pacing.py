"""Keeping a collection from crowding out the requests the node serves.

Collection runs in a worker thread and is mostly Python (index scans), so it holds the
GIL while it works; `Pacer` makes it pause for a share of the time it has just worked,
which bounds how long a request can wait for the interpreter, and is where a node that is
shutting down stops a run between two batches.
"""

from __future__ import annotations

import threading
import time


class Stopped(Exception):
    """The node is stopping: the run ends between two batches, nothing half done."""


class Pacer:
    def __init__(self, duty: float = 0.5, every: int = 256,
                 stop: threading.Event | None = None) -> None:
        if not 0 < duty <= 1:
            raise ValueError(f"duty must be in (0, 1], not {duty}")
        self._rest = (1 - duty) / duty
        self._every = every
        self._stop = stop or threading.Event()
        self._count = 0
        self._since = time.monotonic()

    def tick(self, n: int = 1) -> None:
        """Count `n` items of work; every so often, rest."""
        self._count += n
        if self._count >= self._every:
            self.rest()

    def rest(self) -> None:
        """Pause in proportion to the work since the last pause. Never call inside a write
        transaction: every writer of the node would wait."""
        if self._stop.is_set():
            raise Stopped
        worked = time.monotonic() - self._since
        if self._rest and worked > 0:
            time.sleep(min(worked * self._rest, 1.0))
        self._count = 0
        self._since = time.monotonic()
