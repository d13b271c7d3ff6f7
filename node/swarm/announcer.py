"""An edge's announcements to owners: what it gained and dropped, batched, plus heartbeats
that keep its lease, and a full resend when an owner has forgotten it.

Changes are merged per blob while they wait (gained and dropped bits cancel out), so what
is pending is bounded by the blobs in the cache, not by the number of chunks that landed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from node.errors import NodeError
from node.swarm.client import SwarmClient
from node.swarm.directory import OwnerDirectory
from node.swarm.holders import LEASE_SECONDS, Holding

log = logging.getLogger(__name__)

ANNOUNCE_EVERY = 0.2        # batch landings this long: a few messages a second per edge
HEARTBEAT_EVERY = LEASE_SECONDS / 3


class Announcer:
    def __init__(self, client: SwarmClient, directory: OwnerDirectory, address: str,
                 everything: Callable[[], list[Holding]], seeds: Sequence[str] = ()) -> None:
        self._client = client
        self._directory = directory
        self.address = address
        self._everything = everything
        self._pending: dict[tuple[str, int], tuple[int, int]] = {}
        # Owners heartbeated: the seeds from the start (so an owner knows this edge before
        # its first chunk lands, and can list it as soon as it serves it), then every
        # owner announced to.
        self._owners: set[str] = set(seeds)
        self._synced: set[str] = set()  # owners that have this edge's whole state
        self._wake = asyncio.Event()
        self._wake.set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def gained(self, digest: str, chunk_count: int, bits: int) -> None:
        self._change(Holding(digest, chunk_count, gained=bits))

    def dropped(self, holdings: list[Holding]) -> None:
        for h in holdings:
            self._change(h)

    def _change(self, h: Holding) -> None:
        key = (h.digest, h.chunk_count)
        gained, dropped = self._pending.get(key, (0, 0))
        gained = (gained & ~h.dropped) | h.gained
        dropped = (dropped & ~h.gained) | h.dropped
        self._pending[key] = (gained, dropped)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT_EVERY):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self._flush()
            await asyncio.sleep(ANNOUNCE_EVERY)

    async def _flush(self) -> None:
        batch, self._pending = self._pending, {}
        by_owner: dict[str, list[Holding]] = {owner: [] for owner in self._owners}
        for (digest, count), (gained, dropped) in batch.items():
            for owner in self._directory.owners_of(digest):
                by_owner.setdefault(owner, []).append(Holding(digest, count, gained, dropped))
        for owner, holdings in by_owner.items():
            self._owners.add(owner)
            try:
                unsynced = owner not in self._synced
                if unsynced or await self._client.announce(owner, self.address, holdings):
                    await self._resync(owner)
            except NodeError as exc:
                # Soft state: what failed to go is sent whole once the owner answers again.
                self._synced.discard(owner)
                log.info("announce to %s failed: %s", owner, exc)

    async def _resync(self, owner: str) -> None:
        """Send everything this edge holds of the owner's blobs, replacing what the owner
        had: on the first contact (an edge restarted under the same address must not stay
        listed for what it no longer knows it holds), when asked, and after a failed
        announce."""
        mine = [h for h in self._everything() if owner in self._directory.owners_of(h.digest)]
        await self._client.announce(owner, self.address, mine, full=True)
        self._synced.add(owner)

    async def close(self) -> None:
        """Stop, and tell the owners this edge serves nothing any more."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for owner in self._owners:
            try:
                await self._client.announce(owner, self.address, [], leaving=True)
            except NodeError as exc:
                log.info("leaving %s: %s", owner, exc)
