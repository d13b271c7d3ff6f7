"""One blob being pulled through an edge: pieces fetched from peers and owners in parallel,
out of order within a window ahead of the readers, and handed to readers in order.

The scheduler starts a fetch whenever a piece in the window is missing and some source
that has it has a free stream: the piece a reader waits for first, then the rarest (held
by the fewest peers, ties broken at random) so that edges pulling at the same moment take
different pieces and feed each other. Every chunk is checked against its SHA-256 id before
it is cached, announced or read. A source that fails costs a retry of the rest of its
piece elsewhere; one that sends bad bytes is put aside.

Memory: a fetch holds one gRPC message (~1 MiB) at a time, written to the cache as it
comes; a reader holds one piece. The window bounds the cache space a pull pins.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import random
import time
from collections.abc import AsyncIterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from node.api import StoredChunk
from node.codec import decode, decode_stored
from node.errors import DataLoss, NodeError, NotFound, Unavailable
from node.recipe import Recipe
from node.swarm.client import Busy
from node.swarm.pieces import Piece, plan
from node.swarm.sources import AVOID_PIECE, BAN_BAD, rarity

if TYPE_CHECKING:
    from node.swarm.edge_swarm import EdgeSwarm

log = logging.getLogger(__name__)

# Pieces in flight for one pull. With relays forwarding as chunks land, a stream from a
# peer runs at the rate that peer receives the piece (B/8 from an owner serving 8), so a
# host filling its link from N-1 relays and the owner needs about N streams: 8 left no
# slack at N=8 (median 1.29 S/B against 1.21 with 12), and once PER_PEER and PER_OWNER
# were really enforced within a scheduling pass, 16 ran at 1.17-1.19 against 12's
# 1.18-1.21. PER_PEER still bounds small swarms.
MAX_FETCHES = 16
# Seconds between holder-list refreshes while pieces are missing. A fresher list puts a
# host on a relay sooner; with the lists gzip'ed, 8 edges asking 4 times a second cost the
# origin ~0.3 % of its uplink. 0.5 s measured 1.17-1.24 S/B at N=8 (median host, six runs),
# 0.25 s 1.17-1.18 in five of six (1.23 in the other), interleaved.
HOLDERS_EVERY = 0.25
TICK = 0.25                 # the scheduler looks again at least this often
# Owner failures (not busy answers) that fail the pull: this many in a row, over at least
# this long. A count alone ended a pull two seconds into an origin's restart (each failure
# puts the owner aside 0.5 s, two streams at a time); a restarting node is back in a few.
OWNER_GIVE_UP = 8
OWNER_GIVE_UP_SECONDS = 10.0
REDIRECT_PAUSE = 1.0        # seconds an owner that redirected a piece is not asked for it
STALL_LIMIT = 300.0         # seconds without a chunk landing (all busy, say) that fail it
READ_PIECE = 1 << 20


def _verify(chunks: Sequence[StoredChunk]) -> None:
    for chunk in chunks:
        decode(chunk)  # DataLoss unless the bytes hash to the id


def _assemble(chunks: Sequence[StoredChunk]) -> bytes:
    return b"".join(decode_stored(c) for c in chunks)


class Download:
    def __init__(self, swarm: EdgeSwarm, digest: str, recipe: Recipe) -> None:
        self.swarm = swarm
        self.digest = digest
        self.count = len(recipe)
        self.pieces = plan(recipe, swarm.piece_bytes)
        self._starts = [0, *accumulate(p.size for p in self.pieces)]
        self._readers: dict[object, int] = {}
        self._view: dict[str, int] = {}
        self._fetches: set[asyncio.Task[None]] = set()
        self._pinned: set[int] = set()
        self._wake = asyncio.Event()
        self._refreshing: asyncio.Task[None] | None = None
        self._refresh_at = 0.0
        self._owner_failures = 0
        self._owner_failing_since = 0.0
        self._progress = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        cache = self.swarm.cache
        for piece in self.pieces:
            if all(cache.has(piece.ids)):
                piece.local = True
                piece.next = piece.end
                piece.done.set()
                bits = cache.mark(self.digest, self.count, piece.first, piece.ids)
                self.swarm.gained(self.digest, self.count, bits)
        self._ensure_running()

    def _ensure_running(self) -> None:
        if self.error is None and (self._task is None or self._task.done()):
            self._progress = time.monotonic()
            self._task = asyncio.create_task(self._run())

    def _fail(self, exc: BaseException) -> None:
        log.warning("pull of %s failed: %s", self.digest, exc)
        self.error = exc
        for piece in self.pieces:
            piece.done.set()  # wake readers, who see `error`
            piece.nudge()

    async def close(self) -> None:
        tasks = [t for t in (self._task, self._refreshing, *self._fetches) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for index in self._pinned:
            self.swarm.cache.unpin(self.pieces[index].ids)
        self._pinned.clear()
        await self.swarm.cache.evict()  # what the pull held over the limit may go now

    # -- scheduling ----------------------------------------------------------------------

    def _window(self) -> range:
        low = min(self._readers.values(), default=0)
        return range(low, min(low + self.swarm.window, len(self.pieces)))

    async def _run(self) -> None:
        try:
            while not all(p.done.is_set() for p in self.pieces):
                self._wake.clear()
                now = time.monotonic()
                if now - self._progress > STALL_LIMIT and self._readers:
                    raise Unavailable(f"no chunk of {self.digest} came for "
                                      f"{STALL_LIMIT:.0f} s")
                self._pin()
                if self.swarm.p2p and now >= self._refresh_at and self._refreshing is None:
                    first = self._refresh_at == 0.0
                    self._refresh_at = now + HOLDERS_EVERY
                    self._refreshing = asyncio.create_task(self._refresh())
                    if first:
                        # Holders before the first fetch: a pull that starts after others
                        # takes from them, not from the owner (one round trip).
                        await asyncio.shield(self._refreshing)
                self._start_fetches(now)
                try:
                    async with asyncio.timeout(TICK):
                        await self._wake.wait()
                except TimeoutError:
                    pass
        except Exception as exc:
            self._fail(exc)

    def _pin(self) -> None:
        want = set(self._window()) | {p.index for p in self.pieces if p.fetching}
        cache = self.swarm.cache
        for index in want - self._pinned:
            cache.pin(self.pieces[index].ids)
        for index in self._pinned - want:
            cache.unpin(self.pieces[index].ids)
        self._pinned = want

    def _start_fetches(self, now: float) -> None:
        todo = [self.pieces[i] for i in self._window()
                if not self.pieces[i].done.is_set() and not self.pieces[i].fetching]
        if not todo:
            return
        urgent, rest = todo[0], todo[1:]
        rest.sort(key=lambda p: (rarity(p, self._view), random.random()))
        owners = self.swarm.owners.owners_of(self.digest)
        for piece in (urgent, *rest):
            if len(self._fetches) >= MAX_FETCHES:
                return
            choice = self.swarm.sources.pick(piece, self._view, owners, now)
            if choice is None:
                continue
            piece.fetching = True
            address, owner = choice
            # Counted now, not when the task first runs: the picks after this one in the
            # same pass must see it, or PER_PEER and PER_OWNER bound nothing (all twelve
            # first fetches went to the owner, which answered most of them busy).
            self.swarm.sources.started(address)
            task = asyncio.create_task(self._fetch(piece, address, owner))
            self._fetches.add(task)
            task.add_done_callback(self._fetches.discard)
            task.add_done_callback(functools.partial(self._fetch_ended, address))

    def _fetch_ended(self, address: str, task: asyncio.Task[None]) -> None:
        self.swarm.sources.done(address)

    async def _refresh(self) -> None:
        try:
            dead = self.swarm.sources.reports()
            for owner in self.swarm.owners.owners_of(self.digest):
                asked = time.monotonic()
                try:
                    found = await self.swarm.client.holders(owner, self.digest,
                                                            self.swarm.address, dead)
                except NodeError as exc:
                    log.debug("holders of %s from %s: %s", self.digest, owner, exc)
                    continue
                # One line an answer, beside the fetch lines (p2p_fanout --trace).
                log.debug("holders source=%s count=%d start=%.3f end=%.3f", owner,
                          len(found.holders), asked, time.monotonic())
                if found.chunk_count in (0, self.count):  # 0: nobody holds any of it
                    self._view = dict(found.holders)
                    self._wake.set()
                return
        finally:
            self._refreshing = None

    # -- one fetch -----------------------------------------------------------------------

    async def _fetch(self, piece: Piece, address: str, owner: bool) -> None:
        swarm = self.swarm
        source = "owner" if owner else "peer"
        ids = piece.missing()
        swarm.cache.expect(ids)
        requester = swarm.address if swarm.p2p else ""
        cursor = first = piece.next
        direct = owner and piece.direct
        outcome = "done"
        started = time.monotonic()
        try:
            async for chunks in swarm.client.fetch(address, self.digest, cursor, ids,
                                                   requester, direct):
                cursor = await self._land(piece, chunks, source, cursor)
            if cursor < piece.end:
                raise Unavailable(f"{address} ended its answer early")
            piece.done.set()
            piece.nudge()
            if owner:
                self._owner_failures = 0
        except Busy as busy:
            outcome = "busy" if busy.retry_after > 0 else "redirected"
            now = time.monotonic()
            if busy.retry_after > 0:
                swarm.sources.put_aside(address, busy.retry_after * random.uniform(0.5, 1.5))
            elif owner:
                # A redirect: wait for the holders' streams rather than ask again at once.
                piece.avoid[address] = now + REDIRECT_PAUSE
            if swarm.p2p and busy.holders.chunk_count == self.count:
                self._view.update(busy.holders.holders)
            holders = busy.holders.holders
            if owner and holders and all(swarm.sources.aside(a, now) for a, _ in holders):
                piece.direct = True  # sent back to peers we already gave up on
        except NotFound as exc:
            outcome = "not found"
            piece.direct = True
            piece.avoid[address] = time.monotonic() + AVOID_PIECE
            if address in self._view:
                self._view[address] &= ~(1 << piece.next)
            if owner:
                self._fail(exc)  # the origin lost the blob: no one else will have it
        except DataLoss as exc:
            outcome = "bad bytes"
            piece.direct = True
            swarm.counters.rejected_chunks += 1
            log.warning("%s sent chunks of %s that fail their hash: %s; putting it aside",
                        address, self.digest, exc)
            swarm.sources.put_aside(address, BAN_BAD)
            self._view.pop(address, None)
        except NodeError as exc:
            outcome = "failed"
            piece.direct = True
            swarm.counters.source_failures += 1
            log.info("fetch from %s failed after %d chunks of piece %d: %s", address,
                     piece.next - piece.first, piece.index, exc)
            if owner:
                swarm.sources.put_aside(address, 0.5)
            else:
                swarm.sources.unreachable(address)
            self._view.pop(address, None)
            if owner:
                now = time.monotonic()
                if self._owner_failures == 0:
                    self._owner_failing_since = now
                self._owner_failures += 1
                if (self._owner_failures >= OWNER_GIVE_UP
                        and now - self._owner_failing_since >= OWNER_GIVE_UP_SECONDS):
                    self._fail(exc)
        except Exception as exc:
            outcome = "error"
            self._fail(exc)
        finally:
            # One line a fetch, for timelines of a pull (benchmarks/p2p_fanout.py --trace).
            log.debug("fetch piece=%d source=%s owner=%d direct=%d chunks=%d start=%.3f "
                      "end=%.3f outcome=%s", piece.index, address, owner, direct,
                      cursor - first, started, time.monotonic(), outcome)
            swarm.cache.settle(ids)
            piece.fetching = False
            self._wake.set()

    async def _land(self, piece: Piece, chunks: list[StoredChunk], source: str,
                    cursor: int) -> int:
        """Check, cache and announce chunks that arrived for `piece` at recipe index
        `cursor`; returns the index after them."""
        start = cursor - piece.first
        expected = piece.ids[start:start + len(chunks)]
        if [c.id for c in chunks] != expected:
            raise DataLoss("answered with other chunks than asked")
        swarm = self.swarm
        await swarm.cache.write(chunks, verify=_verify, blob=(self.digest, self.count, cursor))
        bits = swarm.cache.mark(self.digest, self.count, cursor, expected)
        cursor += len(chunks)
        piece.next = cursor
        piece.nudge()
        self._progress = time.monotonic()
        swarm.counters.received[source] += sum(len(c.data) for c in chunks)
        swarm.gained(self.digest, self.count, bits)
        return cursor

    # -- readers -------------------------------------------------------------------------

    async def read(self, offset: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [offset, end) of the blob, in order, in pieces of at most READ_PIECE,
        each piece streamed as its chunks land."""
        if offset >= end:
            return
        first = bisect.bisect_right(self._starts, offset) - 1
        last = bisect.bisect_left(self._starts, end) - 1
        token = object()
        self._readers[token] = first
        self._wake.set()
        try:
            for piece in self.pieces[first:last + 1]:
                self._readers[token] = piece.index
                self._progress = time.monotonic()  # a reader moving on is progress too
                self._wake.set()
                base = self._starts[piece.index]
                async for data in self._stream(piece, max(offset, base) - base,
                                               min(end, base + piece.size) - base):
                    yield data
        finally:
            del self._readers[token]
            self._wake.set()

    async def _stream(self, piece: Piece, lo: int, hi: int) -> AsyncIterator[bytes]:
        """Bytes [lo, hi) of `piece`, read from the cache as its chunks land."""
        ends = list(accumulate(piece.lengths))
        k = bisect.bisect_right(ends, lo)           # first chunk overlapping lo
        stop = bisect.bisect_left(ends, hi) + 1     # one past the last overlapping hi - 1
        while k < stop:
            landed = piece.next - piece.first
            if self.error is not None:
                raise Unavailable(f"pull of {self.digest} failed: {self.error}")
            if landed <= k:
                await piece.landed.wait()
                continue
            upto = min(stop, landed)
            try:
                chunks = await self.swarm.cache.read(piece.ids[k:upto])
            except NotFound:
                # Evicted or damaged on disk since it landed: fetch it again.
                piece.reset()
                piece.local = False
                self._ensure_running()
                self._wake.set()
                continue
            if piece.local:
                self.swarm.counters.received["cache"] += sum(len(c.data) for c in chunks)
            data = await asyncio.to_thread(_assemble, chunks)
            at = ends[k - 1] if k else 0
            for x in range(max(lo, at) - at, min(hi, ends[upto - 1]) - at, READ_PIECE):
                yield data[x:min(x + READ_PIECE, min(hi, ends[upto - 1]) - at)]
            k = upto

    @property
    def readers(self) -> int:
        return len(self._readers)
