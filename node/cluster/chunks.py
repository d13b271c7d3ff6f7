"""Chunks across the cluster: each on its R owners, written to W before a put returns,
read from any owner that answers with the right bytes.

Writes go out in units of a few MiB, one put stream per owner per unit, and a unit stays
in memory until W owners have made it durable: an owner that fails mid-unit costs a resend
of that unit to the next member in the chunk's placement order, not a failed push.
Reads verify every chunk's SHA-256 (node/codec.py `decode`): a member that answers with
wrong bytes is treated as failed for that chunk and the next one is asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from node.api import PutResult, StoredChunk
from node.cluster import placement
from node.cluster.membership import Membership, Peer
from node.codec import decode
from node.errors import (
    DataLoss,
    InvalidArgument,
    NodeError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from node.grouping import by_size

log = logging.getLogger(__name__)

Fetched = dict[bytes, tuple[StoredChunk, bytes]]
Failed = dict[bytes, NodeError]

PUT_UNIT = 4 << 20          # chunk bytes held until W owners have them
PUTS_IN_FLIGHT = 2          # units being written at once
MESSAGE = 1 << 20
LOOKUP_BATCH = 4096         # ids per Has call
FETCH_DEADLINE = 15.0       # seconds one member gets to send one read window (~4 MiB)


async def put_on(peer: Peer, chunks: Sequence[StoredChunk]) -> PutResult:
    """`chunks` onto one member as one put stream of ~1 MiB messages: durable together."""
    async def messages() -> AsyncIterator[Sequence[StoredChunk]]:
        for group in by_size(chunks, MESSAGE):
            yield group

    return await peer.call(peer.node.put_chunks(messages()))


class ClusterChunks:
    def __init__(self, members: Membership, exclude: str = "") -> None:
        """`exclude`: a member not to read from (a member healing its own copies)."""
        self.members = members
        self.exclude = exclude
        self.replicas = members.config.replicas
        self.quorum = members.config.write_quorum

    # -- lookups ------------------------------------------------------------------------------

    async def lengths(self, ids: Sequence[bytes], everywhere: bool = False
                      ) -> list[list[int | None]]:
        """For each id, the raw length each asked member holds (None: not there). The
        chunk's live owners are asked, or with `everywhere` every live member."""
        answers: list[list[int | None]] = [[] for _ in ids]
        asks: dict[str, list[int]] = defaultdict(list)
        peers: dict[str, Peer] = {}
        for i, cid in enumerate(ids):
            order = self.members.write_order(placement.CHUNK, cid)
            for peer in order if everywhere else order[:self.replicas]:
                asks[peer.id].append(i)
                peers[peer.id] = peer

        async def ask(peer: Peer, indexes: list[int]) -> None:
            for start in range(0, len(indexes), LOOKUP_BATCH):
                part = indexes[start:start + LOOKUP_BATCH]
                try:
                    found = await peer.call(peer.node.chunk_lengths([ids[i] for i in part]))
                except Unavailable:
                    return
                for i, n in zip(part, found, strict=True):
                    answers[i].append(n)

        await asyncio.gather(*(ask(peers[pid], idx) for pid, idx in asks.items()))
        return answers

    async def has(self, ids: Sequence[bytes]) -> list[bool]:
        """Stored on at least W owners: a writer need not send it again."""
        found = await self.lengths(ids)
        return [sum(n is not None for n in ns) >= self.quorum for ns in found]

    async def check_stored(self, entries: Sequence[tuple[bytes, int]]) -> None:
        """NotFound naming the first chunk no member holds, InvalidArgument when a holder
        says it has another length: what a node checks before it records a recipe."""
        unique = list(dict.fromkeys(entries))
        ids = [cid for cid, _ in unique]
        found = await self.lengths(ids)
        missing = [i for i, ns in enumerate(found) if not any(n is not None for n in ns)]
        if missing:
            # Perhaps written while an owner was down: look everywhere before refusing.
            again = await self.lengths([ids[i] for i in missing], everywhere=True)
            for i, ns in zip(missing, again, strict=True):
                found[i] = ns
        for (cid, length), ns in zip(unique, found, strict=True):
            held = [n for n in ns if n is not None]
            if not held:
                raise NotFound(f"chunk {cid.hex()} is not stored")
            # One holder with the length the recipe gives is enough: a member that answers
            # otherwise is wrong about this chunk, and reads will not trust its bytes.
            if length not in held:
                raise InvalidArgument(f"chunk {cid.hex()} has {held[0]} bytes, not {length}")

    # -- writes -------------------------------------------------------------------------------

    async def put(self, batches: AsyncIterable[Sequence[StoredChunk]]) -> PutResult:
        running: set[asyncio.Task[PutResult]] = set()
        totals = [0, 0, 0]
        unit: list[StoredChunk] = []
        unit_bytes = 0

        def add(result: PutResult) -> None:
            totals[0] += result.stored
            totals[1] += result.duplicate
            totals[2] += result.stored_bytes

        async def launch(chunks: list[StoredChunk]) -> None:
            while len(running) >= PUTS_IN_FLIGHT:
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    running.discard(task)
                    add(task.result())
            running.add(asyncio.create_task(self._put_unit(chunks)))

        try:
            async for batch in batches:
                for chunk in batch:
                    unit.append(chunk)
                    unit_bytes += len(chunk.data)
                if unit_bytes >= PUT_UNIT:
                    await launch(unit)
                    unit, unit_bytes = [], 0
            if unit:
                await launch(unit)
            for task in list(running):
                running.discard(task)
                add(await task)
        finally:
            for task in running:
                task.cancel()
        return PutResult(*totals)

    async def _put_unit(self, chunks: list[StoredChunk]) -> PutResult:
        """Store `chunks` on the first R live members of each one's placement order; a
        member that fails is replaced by the next in that order. Unavailable when some
        chunk could not reach W members."""
        orders = [self.members.write_order(placement.CHUNK, c.id) for c in chunks]
        next_candidate = [self.replicas] * len(chunks)
        stored_on = [0] * len(chunks)
        assign: dict[str, list[int]] = defaultdict(list)
        peers: dict[str, Peer] = {}
        for i, order in enumerate(orders):
            for peer in order[:self.replicas]:
                assign[peer.id].append(i)
                peers[peer.id] = peer
        totals = [0, 0, 0]
        failures: list[str] = []
        while assign:
            work = list(assign.items())
            results = await asyncio.gather(
                *(put_on(peers[pid], [chunks[i] for i in idx]) for pid, idx in work),
                return_exceptions=True)
            assign = defaultdict(list)
            for (pid, idx), result in zip(work, results, strict=True):
                if isinstance(result, PutResult):
                    for i in idx:
                        stored_on[i] += 1
                    totals[0] += result.stored
                    totals[1] += result.duplicate
                    totals[2] += result.stored_bytes
                    continue
                if isinstance(result, InvalidArgument):
                    raise result  # the sender's bytes do not match their ids
                if not isinstance(result, (Unavailable, ResourceExhausted, DataLoss)):
                    raise result
                failures.append(f"{pid}: {result}")
                log.warning("chunk put on %s failed (%s); trying the next members", pid, result)
                for i in idx:
                    order = orders[i]
                    while next_candidate[i] < len(order):
                        stand_in = order[next_candidate[i]]
                        next_candidate[i] += 1
                        if stand_in.up:
                            assign[stand_in.id].append(i)
                            peers[stand_in.id] = stand_in
                            break
        short = [i for i, n in enumerate(stored_on) if n < self.quorum]
        if short:
            raise Unavailable(
                f"{len(short)} chunks reached fewer than {self.quorum} members "
                f"({'; '.join(failures) or 'too few members are up'})")
        # Each member counts its own copies: report the logical figure, per chunk.
        copies = max(1, sum(stored_on) // max(1, len(chunks)))
        return PutResult(totals[0] // copies, totals[1] // copies, totals[2] // copies)

    # -- reads --------------------------------------------------------------------------------

    async def fetch(self, ids: Sequence[bytes]) -> list[tuple[StoredChunk, bytes]]:
        """The chunks `ids` (as stored, and decoded), in order, each verified against its
        id. Each is asked of its members in read order until one answers with the right
        bytes; NotFound or DataLoss when none does."""
        unique = list(dict.fromkeys(ids))
        orders = {cid: [p for p in self.members.read_order(placement.CHUNK, cid)
                        if p.id != self.exclude] for cid in unique}
        tried = dict.fromkeys(unique, 0)
        got: dict[bytes, tuple[StoredChunk, bytes]] = {}
        errors: dict[bytes, NodeError] = {}
        pending = unique
        while pending:
            assign: dict[str, list[bytes]] = defaultdict(list)
            peers: dict[str, Peer] = {}
            for cid in pending:
                order = orders[cid]
                if tried[cid] >= len(order):
                    raise errors.get(cid) or NotFound(f"chunk {cid.hex()} is not stored")
                peer = order[tried[cid]]
                tried[cid] += 1
                assign[peer.id].append(cid)
                peers[peer.id] = peer
            outcomes = await asyncio.gather(
                *(self._fetch_from(peers[pid], want) for pid, want in assign.items()))
            for found, failed in outcomes:
                got.update(found)
                errors.update(failed)
            pending = [cid for cid in pending if cid not in got]
        return [got[cid] for cid in ids]

    async def _fetch_from(self, peer: Peer, ids: list[bytes]) -> tuple[Fetched, Failed]:
        received: list[StoredChunk] = []
        failed: dict[bytes, NodeError] = {}

        async def receive() -> None:
            async for chunk in peer.node.get_chunks(ids, skip_missing=True):
                received.append(chunk)

        try:
            # A member that is up but slow (a busy disk, a saturated link) is skipped for
            # this window rather than waited for: the next owner is asked.
            await asyncio.wait_for(peer.call(receive()), FETCH_DEADLINE)
        except (NodeError, TimeoutError) as exc:
            log.warning("reading chunks from %s failed: %s", peer.id, exc or "too slow")
            failed.update(dict.fromkeys((c for c in ids if c not in {r.id for r in received}),
                                        exc if isinstance(exc, NodeError)
                                        else Unavailable(f"{peer.id} too slow")))

        def verify() -> Fetched:
            good = {}
            wanted = set(ids)
            for chunk in received:
                try:
                    if chunk.id not in wanted:
                        raise DataLoss(f"sent chunk {chunk.id.hex()}, which was not asked for")
                    good[chunk.id] = (chunk, bytes(decode(chunk)))
                except (DataLoss, InvalidArgument) as exc:
                    log.warning("member %s served bad bytes: %s", peer.id, exc)
                    failed[chunk.id] = DataLoss(str(exc))
            return good

        good = await asyncio.to_thread(verify)
        for cid in ids:
            if cid not in good and cid not in failed:
                failed[cid] = NotFound(f"chunk {cid.hex()} is not stored")
        return good, failed
