"""An edge's cap on what it uploads to peers: a token bucket shared by every stream its
Peer service serves, so a host's uplink keeps room for its own traffic. It is not a way to
keep a FIFO-queued uplink short for the acknowledgements of the host's downloads: at 0.9
of B it left p2p_fanout --ack-fifo where it was (TCP's bursts within a second fill the
queue whatever the average rate)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from node.rpc.options import MESSAGE_BYTES


class TokenBucket:
    """At most `rate` bytes a second on average, in bursts of at most `burst` (default: a
    tenth of a second's worth, and never under one message, which is sent whole)."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(float(MESSAGE_BYTES), rate / 10)
        self._tokens = self.burst
        self._clock = clock
        self._at = clock()
        self._turn = asyncio.Lock()  # streams wait their turn, first come first served

    def delay(self, size: int) -> float:
        """Take `size` bytes' worth now; the seconds to wait before sending them (the
        bucket may go into debt for a message larger than what is left)."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= size
        return max(0.0, -self._tokens / self.rate)

    async def take(self, size: int) -> None:
        async with self._turn:
            wait = self.delay(size)
            if wait > 0:
                await asyncio.sleep(wait)
