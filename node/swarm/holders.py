"""The owner's book of holders: which edge holds which chunks of which blob.

Soft state, in memory only: an edge that the owner forgets (lease expired, owner restarted)
is told to resend everything on its next announce, and a stale entry costs a fetcher one
NOT_FOUND answer. Every table is bounded, so announces cannot grow an owner without limit.

Holdings are Python ints used as bitsets over a recipe's chunk indexes: OR and AND-NOT of
whole bitmaps run in C, and `int.from_bytes(bits, "little")` is the LSB-first bitmap of
the wire format.
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

LEASE_SECONDS = 15.0
MAX_HOLDERS = 4096              # edges tracked at once; the least recently heard is dropped
MAX_BLOBS_PER_HOLDER = 4096     # an edge announcing more loses its least recent blobs
MAX_CHUNK_COUNT = 1 << 22       # a recipe of 4 Mi chunks is a ~80 GiB blob
DEFAULT_LIMIT = 32              # holders per answer: enough to spread load, small to send
MAX_SUSPECTS = 1024


def to_bits(packed: bytes, count: int) -> int:
    """A wire bitmap as an int, bits past `count` cleared."""
    return int.from_bytes(packed, "little") & ((1 << count) - 1)


def from_bits(bits: int, count: int) -> bytes:
    return bits.to_bytes((count + 7) // 8, "little")


@dataclass(frozen=True, slots=True)
class Holding:
    digest: str
    chunk_count: int
    gained: int = 0
    dropped: int = 0


@dataclass(slots=True)
class _Holder:
    seen: float
    blobs: OrderedDict[str, tuple[int, int]] = field(default_factory=OrderedDict)


class HolderBook:
    def __init__(self, lease: float = LEASE_SECONDS, max_holders: int = MAX_HOLDERS,
                 max_blobs: int = MAX_BLOBS_PER_HOLDER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lease = lease
        self._max_holders = max_holders
        self._max_blobs = max_blobs
        self._clock = clock
        self._holders: OrderedDict[str, _Holder] = OrderedDict()  # least recently heard first
        self._by_blob: dict[str, set[str]] = {}
        self._suspects: dict[str, float] = {}  # holder -> when it is dropped unless heard

    def __len__(self) -> int:
        return len(self._holders)

    def announce(self, holder: str, holdings: Iterable[Holding], full: bool = False) -> bool:
        """Record what `holder` gained and dropped; False when it was unknown and sent
        only changes (it must then resend everything with `full`)."""
        self._expire()
        entry = self._holders.get(holder)
        known = entry is not None
        if entry is None or full:
            if entry is not None:
                self._forget(holder)
            entry = _Holder(self._clock())
            self._holders[holder] = entry
            while len(self._holders) > self._max_holders:
                self._forget(next(iter(self._holders)))
        entry.seen = self._clock()
        self._holders.move_to_end(holder)
        self._suspects.pop(holder, None)
        for h in holdings:
            if not 0 < h.chunk_count <= MAX_CHUNK_COUNT:
                continue
            count, bits = entry.blobs.pop(h.digest, (h.chunk_count, 0))
            if count != h.chunk_count:  # a different recipe length: the old bits mean nothing
                bits = 0
            mask = (1 << h.chunk_count) - 1
            bits = ((bits | h.gained) & ~h.dropped) & mask
            if bits:
                entry.blobs[h.digest] = (h.chunk_count, bits)
                self._by_blob.setdefault(h.digest, set()).add(holder)
            else:
                self._unlist(h.digest, holder)
            while len(entry.blobs) > self._max_blobs:
                old, _ = entry.blobs.popitem(last=False)
                self._unlist(old, holder)
        return known or full

    def suspect(self, holder: str) -> None:
        """A fetcher could not reach `holder`: drop it unless it announces within half a
        lease (edges heartbeat every third of one). A false report costs a live holder
        nothing."""
        if holder in self._holders and holder not in self._suspects:
            if len(self._suspects) >= MAX_SUSPECTS:
                return
            self._suspects[holder] = self._clock() + self.lease / 2

    def leave(self, holder: str) -> None:
        if holder in self._holders:
            self._forget(holder)

    def gained(self, holder: str, digest: str, chunk_count: int, bits: int) -> None:
        """Chunks an owner itself just sent to `holder`: listed at once, so other fetchers
        ask that holder (which waits for them to land) rather than the owner again. Only
        for holders already known, whose lease this does not extend."""
        entry = self._holders.get(holder)
        if entry is None or not 0 < chunk_count <= MAX_CHUNK_COUNT:
            return
        count, old = entry.blobs.get(digest, (chunk_count, 0))
        if count != chunk_count:
            return
        entry.blobs[digest] = (chunk_count, old | bits)
        self._by_blob.setdefault(digest, set()).add(holder)

    def holders(self, digest: str, exclude: str = "", limit: int = DEFAULT_LIMIT
                ) -> tuple[int, list[tuple[str, int]]]:
        """(chunk count, [(holder, bits)]) for `digest`, at most `limit` holders, a random
        choice when there are more, so load spreads over all of them."""
        self._expire()
        names = [n for n in self._by_blob.get(digest, ()) if n != exclude]
        if len(names) > limit:
            names = random.sample(names, limit)
        count = 0
        out: list[tuple[str, int]] = []
        for name in names:
            count, bits = self._holders[name].blobs[digest]
            out.append((name, bits))
        return count, out

    def _expire(self) -> None:
        now = self._clock()
        for name, until in list(self._suspects.items()):
            if until <= now:
                del self._suspects[name]
                if name in self._holders:
                    self._forget(name)
        cutoff = now - self.lease
        while self._holders:
            name, entry = next(iter(self._holders.items()))
            if entry.seen >= cutoff:
                break
            self._forget(name)

    def _forget(self, holder: str) -> None:
        self._suspects.pop(holder, None)
        entry = self._holders.pop(holder)
        for digest in entry.blobs:
            self._unlist(digest, holder)

    def _unlist(self, digest: str, holder: str) -> None:
        names = self._by_blob.get(digest)
        if names is None:
            return
        names.discard(holder)
        if not names:
            del self._by_blob[digest]
