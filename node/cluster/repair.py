"""A member's background duty: keep R copies of everything it holds, and catch rot.

Repair passes run every few seconds. Each pass walks what this member stores and, for
each item, asks the item's current owners (the first R live members of its placement
order) whether they have it, and sends it to those that do not:
- repository metadata: every entry, merged on the owner (last writer wins), which also
  makes concurrent tag writes converge;
- blob recipes;
- chunks, at a bounded rate so repair never starves clients.
So after a member dies, the survivors re-create its copies on the next members in order;
when it comes back or a new one joins, the items it now owns flow to it.

Scrub re-reads every stored chunk on a slower schedule and re-hashes it with SHA-256; a
corrupt chunk is replaced by a verified copy from another member.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from node.cluster import placement
from node.cluster.chunks import ClusterChunks, put_on
from node.cluster.membership import Membership, Peer
from node.errors import NodeError
from node.grouping import by_size
from node.local import LocalNode
from node.recipe import Recipe
from shoal.v1 import cluster_pb2

log = logging.getLogger(__name__)

SCAN_STEP = 2048            # chunk ids looked at per step
SEND_IDS = 512              # chunks read from disk at once for sending
SEND_BATCH = 16 << 20       # chunk bytes sent to one owner as one put stream (one fsync)
DOWN_GRACE = 30.0           # seconds a member may be down before its copies are made elsewhere


@dataclass
class RepairStats:
    under_replicated: int = 0      # found short at the last complete pass
    last_pass_ms: int = 0
    repaired_chunks: int = 0
    repaired_bytes: int = 0
    scrubbed_chunks: int = 0
    last_scrub_ms: int = 0
    view: tuple[str, ...] = ()     # members up when the last complete pass began
    pass_began_ms: int = 0         # when it began
    handed_back_chunks: int = 0    # stand-in copies dropped once their owners had them


class RateLimit:
    """A token bucket in bytes per second: repair traffic stays under it."""

    def __init__(self, per_second: float) -> None:
        self.rate = per_second
        self._allowance = per_second
        self._stamp = time.monotonic()

    async def take(self, amount: int) -> None:
        if self.rate <= 0:
            return
        while True:
            now = time.monotonic()
            self._allowance = min(self.rate, self._allowance + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._allowance >= amount or self._allowance >= self.rate:
                self._allowance -= amount
                return
            await asyncio.sleep((amount - self._allowance) / self.rate)


class Repairer:
    def __init__(self, node: LocalNode, members: Membership, self_id: str,
                 rate: float = 64 << 20, grace: float = DOWN_GRACE) -> None:
        self.grace = grace
        self.node = node
        self.members = members
        self.self_id = self_id
        self.replicas = members.config.replicas
        self.chunks = ClusterChunks(members)
        self.limit = RateLimit(rate)
        self.stats = RepairStats()

    def _owners(self, kind: bytes, key: bytes | str) -> list[Peer]:
        """The owners repair keeps `key` on: the first R members in its order that are up
        or went down less than `grace` seconds ago. A member restarting, or briefly cut
        off, keeps its place instead of having its copies made elsewhere and then sent
        back to it."""
        now = time.monotonic()
        kept = [p for p in placement.rank(self.members.peers, kind, key)
                if p.up or now - p.down_since < self.grace]
        return kept[:self.replicas]

    def _others(self, kind: bytes, key: bytes | str) -> list[Peer]:
        """The live owners of `key` other than this member."""
        return [p for p in self._owners(kind, key) if p.id != self.self_id and p.up]

    async def run_forever(self, interval: float) -> None:
        while True:
            try:
                await self.repair_once()
            except Exception:
                log.exception("repair pass failed; the next one retries")
            await asyncio.sleep(interval)

    async def repair_once(self) -> int:
        """One pass; the number of items found short of R (and sent where possible)."""
        began = int(time.time() * 1000)
        view = tuple(p.id for p in self.members.live())
        short = await self._repair_metadata() + await self._repair_blobs()
        short += await self._repair_chunks()
        self.stats.under_replicated = short
        self.stats.view = view
        self.stats.pass_began_ms = began
        self.stats.last_pass_ms = int(time.time() * 1000)
        return short

    # -- metadata -------------------------------------------------------------------------

    async def _repair_metadata(self) -> int:
        registry = self.node.registry
        short = 0
        for repository in await asyncio.to_thread(registry.repositories):
            owners = self._others(placement.REPOSITORY, repository)
            if not owners:
                continue
            entries = await asyncio.to_thread(registry.export, repository)
            batch = cluster_pb2.MetadataBatch(entries=[
                cluster_pb2.MetadataEntry(table=t, key=k, value=v) for t, k, v in entries])
            for peer in owners:
                try:
                    reply = await peer.call(peer.cluster.MergeMetadata(batch, timeout=30))
                except Exception as exc:  # grpc errors and Unavailable alike: next pass
                    log.debug("metadata of %s to %s: %s", repository, peer.id, exc)
                    continue
                if reply.changed:
                    short += 1
                    log.info("repair: %d metadata entries of %s sent to %s",
                             reply.changed, repository, peer.id)
        return short

    # -- recipes ---------------------------------------------------------------------------

    async def _repair_blobs(self) -> int:
        short = 0
        for digest, packed in await asyncio.to_thread(self._blobs):
            for peer in self._others(placement.BLOB, digest):
                try:
                    if await peer.call(peer.node.stat_blob(digest)) is not None:
                        continue
                    # The peer may lack it because a client is deleting it from every
                    # member right now (this list was read before): sending it would
                    # bring a deleted blob back. Blob deletes keep no tombstone, so look
                    # again here before and after the send, and undo a send that raced.
                    if not await self._still_here(digest):
                        continue
                    short += 1
                    await peer.call(peer.node.commit_blob(digest, Recipe.unpack(packed)))
                    if not await self._still_here(digest):
                        await peer.call(peer.node.delete_blob(digest))
                        continue
                    log.info("repair: recipe of %s sent to %s", digest, peer.id)
                except NodeError as exc:
                    log.debug("recipe %s to %s: %s", digest, peer.id, exc)
        return short

    async def _still_here(self, digest: str) -> bool:
        return await self.node.stat_blob(digest) is not None

    def _blobs(self) -> list[tuple[str, bytes]]:
        db = self.node.index.db("blobs")
        return self.node.index.read(lambda txn: [
            (bytes(k).decode(), bytes(v)) for k, v in txn.cursor(db=db)])

    # -- chunks ----------------------------------------------------------------------------

    async def _repair_chunks(self) -> int:
        short = 0
        after = b""
        while True:
            ids = await asyncio.to_thread(self.node.chunks.ids_after, after, SCAN_STEP)
            if not ids:
                return short
            after = ids[-1]
            short += await self._repair_chunk_step(ids)

    async def _repair_chunk_step(self, ids: Sequence[bytes]) -> int:
        """Ask every other owner of these chunks which it holds, then send each missing
        copy from one holder only: the first owner in the chunk's order that has it, or,
        when no owner has it, the stand-ins that do (there may be a few; duplicates cost
        bytes, never correctness)."""
        owners = {cid: self._owners(placement.CHUNK, cid) for cid in ids}
        asks: dict[str, list[bytes]] = {}
        peers: dict[str, Peer] = {}
        for cid in ids:
            for peer in owners[cid]:
                if peer.id != self.self_id and peer.up:
                    asks.setdefault(peer.id, []).append(cid)
                    peers[peer.id] = peer

        async def ask(pid: str) -> tuple[str, dict[bytes, bool] | None]:
            peer = peers[pid]
            try:
                held = await peer.call(peer.node.chunk_lengths(asks[pid]))
            except NodeError:
                return pid, None
            return pid, {cid: n is not None for cid, n in zip(asks[pid], held, strict=True)}

        answers = dict(await asyncio.gather(*(ask(pid) for pid in asks)))
        sends: dict[str, list[bytes]] = {}
        handed_back: list[bytes] = []
        short = 0
        for cid in ids:
            if self._handed_back(cid, owners[cid], answers):
                handed_back.append(cid)
                continue
            holders = [p.id for p in owners[cid] if p.id == self.self_id
                       or (answers.get(p.id) or {}).get(cid)]
            missing = []
            for peer in owners[cid]:
                answer = answers.get(peer.id)
                if peer.id != self.self_id and answer is not None and not answer[cid]:
                    missing.append(peer.id)
            if not missing:
                continue
            short += 1
            if holders[:1] == [self.self_id] or not holders:
                for pid in missing:
                    sends.setdefault(pid, []).append(cid)
        await asyncio.gather(*(self._send(peers[pid], wanted) for pid, wanted in sends.items()))
        if handed_back:
            dropped = await asyncio.to_thread(self.node.chunks.drop, handed_back)
            self.stats.handed_back_chunks += dropped
            log.info("repair: %d chunks held for owners that were down are theirs again",
                     dropped)
        return short

    def _handed_back(self, cid: bytes, owners: list[Peer],
                     answers: dict[str, dict[bytes, bool] | None]) -> bool:
        """Whether this member holds `cid` only as a stand-in and may let it go: it is not
        an owner, and every owner is up and has said it holds the chunk."""
        if len(owners) < self.replicas or any(p.id == self.self_id for p in owners):
            return False
        return all(p.up and (answers.get(p.id) or {}).get(cid) for p in owners)

    async def _send(self, peer: Peer, ids: list[bytes]) -> None:
        for start in range(0, len(ids), SEND_IDS):
            chunks = await asyncio.to_thread(self.node.chunks.get_available,
                                             ids[start:start + SEND_IDS])
            for group in by_size(chunks, SEND_BATCH):
                size = sum(len(c.data) for c in group)
                await self.limit.take(size)
                try:
                    await put_on(peer, group)
                except NodeError as exc:
                    log.warning("repair: sending %d chunks to %s failed: %s", len(group),
                                peer.id, exc)
                    return
                self.stats.repaired_chunks += len(group)
                self.stats.repaired_bytes += size
                log.info("repair: %d chunks (%d bytes) sent to %s", len(group), size, peer.id)

    # -- scrub -----------------------------------------------------------------------------

    async def scrub_forever(self, interval: float, rate: float) -> None:
        limit = RateLimit(rate)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.scrub_once(limit)
            except Exception:
                log.exception("scrub failed; the next one retries")

    async def scrub_once(self, limit: RateLimit | None = None) -> int:
        """Re-hash every chunk; replace the corrupt ones from other members. How many
        were found corrupt."""
        found = 0
        after = b""
        while True:
            ids = await asyncio.to_thread(self.node.chunks.ids_after, after, SCAN_STEP // 8)
            if not ids:
                break
            after = ids[-1]
            bad, read = await asyncio.to_thread(self.node.chunks.scrub, ids)
            self.stats.scrubbed_chunks += len(ids)
            if limit is not None:
                await limit.take(read)
            found += len(bad)
            await self._heal(bad)
        found += await self._heal_reported()
        self.stats.last_scrub_ms = int(time.time() * 1000)
        return found

    async def _heal_reported(self) -> int:
        """Chunks a read found corrupt since the last scrub."""
        reported = await asyncio.to_thread(self.node.chunks.corrupt_chunks)
        await self._heal([bytes.fromhex(h) for h in reported])
        return len(reported)

    async def _heal(self, ids: Sequence[bytes]) -> None:
        """Replace corrupt chunks by verified copies from the other members."""
        if not ids:
            return
        others = ClusterChunks(self.members, exclude=self.self_id)
        try:
            good = [chunk for chunk, _ in await others.fetch(ids)]
        except NodeError as exc:
            # Heal one by one, so one chunk nobody else has does not stop the others.
            if len(ids) > 1:
                for cid in ids:
                    await self._heal([cid])
                return
            log.error("chunk %s is corrupt here and no other member has a good copy: %s",
                      ids[0].hex(), exc)
            return
        await asyncio.to_thread(self.node.chunks.replace, good)
