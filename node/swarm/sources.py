"""Which peer or owner to ask for a piece, and which to leave aside for a while.

Edge-wide: a peer that served bad bytes or died is avoided by every pull on this edge,
and the streams open to one address are counted across pulls, so one busy peer is not
asked for more than its share.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence

from node.swarm.pieces import Piece

# Streams open to one peer. Fewer, faster streams finish the piece a reader waits for
# sooner (benchmarks/p2p_fanout.py, N=4: 1.17-1.21 S/B with 2, 1.23-1.26 with 3 or 4;
# N=8, where the cores are the limit, the same within noise).
PER_PEER = 2
PER_OWNER = 2               # streams open to one owner from this edge: owners are shared
BAN_BAD = 120.0             # seconds aside for a source whose bytes failed their hash
BAN_DEAD = 10.0             # seconds aside for a source that failed or hung
MAX_ASIDE = 1024            # addresses remembered as aside; expired ones pruned past it
AVOID_PIECE = 5.0           # a source lacking a piece is not asked for it again meanwhile


class Sources:
    def __init__(self) -> None:
        self.inflight: Counter[str] = Counter()
        self._aside: dict[str, float] = {}
        self._report: set[str] = set()

    def unreachable(self, address: str) -> None:
        """`address` failed or hung: put aside, and reported to owners once."""
        self.put_aside(address, BAN_DEAD)
        if len(self._report) < MAX_ASIDE:
            self._report.add(address)

    def reports(self) -> list[str]:
        """Peers found unreachable since the last call, for the owners' holder books."""
        found, self._report = sorted(self._report), set()
        return found

    def started(self, address: str) -> None:
        """A stream to `address` is about to open."""
        self.inflight[address] += 1

    def done(self, address: str) -> None:
        """A stream to `address` ended."""
        self.inflight[address] -= 1
        if self.inflight[address] <= 0:
            del self.inflight[address]

    def put_aside(self, address: str, seconds: float) -> None:
        now = time.monotonic()
        if len(self._aside) >= MAX_ASIDE:
            self._aside = {a: t for a, t in self._aside.items() if t > now}
        self._aside[address] = max(now + seconds, self._aside.get(address, 0.0))

    def aside(self, address: str, now: float) -> bool:
        return self._aside.get(address, 0.0) > now

    def usable(self, address: str, now: float, streams: int) -> bool:
        until = self._aside.get(address)
        if until is not None and until <= now:
            del self._aside[address]
            until = None
        return until is None and self.inflight[address] < streams

    def pick(self, piece: Piece, view: dict[str, int], owners: Sequence[str], now: float
             ) -> tuple[str, bool] | None:
        """(address, is an owner) to fetch `piece` from, or None when every source that
        has it is busy or aside. Peers first, so owners send only what no peer has; among
        peers, the least loaded."""
        mask = piece.mask()
        peers = [a for a, bits in view.items()
                 if bits & mask == mask and piece.avoid.get(a, 0.0) <= now
                 and self.usable(a, now, PER_PEER)]
        if peers:
            return min(peers, key=lambda a: (self.inflight[a], random.random())), False
        for owner in owners:
            if piece.avoid.get(owner, 0.0) <= now and self.usable(owner, now, PER_OWNER):
                return owner, True
        return None


def rarity(piece: Piece, view: dict[str, int]) -> int:
    """Peers known to hold all of what `piece` still misses."""
    mask = piece.mask()
    return sum(1 for bits in view.values() if bits & mask == mask)
