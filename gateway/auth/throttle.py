"""Back-off for clients that keep failing to sign in: after a few failures in a short
time, their credentials are not even checked until a delay has passed, and the delay
doubles with every further failure (a password-guessing loop slows to a crawl)."""

from __future__ import annotations

import time
from dataclasses import dataclass

FREE_FAILURES = 5       # failures within WINDOW before back-off starts
WINDOW = 60.0
FIRST_DELAY = 1.0
MAX_DELAY = 300.0
MAX_TRACKED = 10_000    # addresses remembered; the oldest are forgotten first


@dataclass(slots=True)
class _Record:
    failures: int
    since: float
    blocked_until: float


class Throttle:
    def __init__(self) -> None:
        self._records: dict[str, _Record] = {}

    def wait(self, who: str) -> float:
        """Seconds `who` must still wait before a sign-in is considered; 0 when free."""
        record = self._records.get(who)
        if record is None:
            return 0.0
        return max(0.0, record.blocked_until - time.monotonic())

    def failed(self, who: str) -> None:
        now = time.monotonic()
        record = self._records.get(who)
        if record is None or now - record.since > max(WINDOW, record.blocked_until - now):
            if len(self._records) >= MAX_TRACKED:
                del self._records[next(iter(self._records))]
            record = self._records[who] = _Record(0, now, 0.0)
        record.failures += 1
        beyond = record.failures - FREE_FAILURES
        if beyond >= 0:
            record.blocked_until = now + min(MAX_DELAY, FIRST_DELAY * 2 ** beyond)

    def succeeded(self, who: str) -> None:
        self._records.pop(who, None)
