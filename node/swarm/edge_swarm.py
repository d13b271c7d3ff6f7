"""An edge's part in the swarm: its cache, the pulls in progress (one Download per blob,
shared by every reader of it), its announcer, the sources it trusts, and its counters."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.recipe import Recipe
from node.rpc.tls import TlsFiles
from node.swarm.announcer import Announcer
from node.swarm.cache import ChunkCache
from node.swarm.client import SwarmClient
from node.swarm.directory import OwnerDirectory
from node.swarm.fetcher import Download
from node.swarm.holders import Holding
from node.swarm.pieces import PIECE_BYTES
from node.swarm.service import PeerService
from node.swarm.sources import Sources

MAX_WINDOW = 64             # pieces fetched ahead of the slowest reader of a pull


@dataclass(slots=True)
class EdgeCounters:
    received: Counter[str] = field(
        default_factory=lambda: Counter({"cache": 0, "peer": 0, "owner": 0}))
    rejected_chunks: int = 0
    source_failures: int = 0


class EdgeSwarm:
    """`address` is where peers reach this edge's Peer service; with `p2p` off, every
    chunk comes from an owner and nothing is announced (the baseline to compare with)."""

    def __init__(self, cache_dir: Path, cache_limit: int, owners: OwnerDirectory,
                 address: str, p2p: bool = True, tls: TlsFiles | None = None,
                 piece_bytes: int = PIECE_BYTES, seeds: Sequence[str] = ()) -> None:
        self.owners = owners
        self.address = address
        self.p2p = p2p
        self.piece_bytes = piece_bytes
        self.client = SwarmClient(tls)
        self.sources = Sources()
        self.counters = EdgeCounters()
        self.cache = ChunkCache(cache_dir, cache_limit, self._dropped)
        # Half the cache for the pieces pulls pin ahead of their readers: the rest is
        # what several pulls at once and the LRU share.
        self.window = max(2, min(MAX_WINDOW, cache_limit // (2 * piece_bytes)))
        self.announcer = Announcer(self.client, owners, address, self._everything, seeds)
        self.peer: PeerService | None = None
        self._downloads: dict[str, Download] = {}

    async def open(self) -> None:
        await self.cache.open()
        if self.p2p:
            self.announcer.start()

    async def close(self) -> None:
        for download in list(self._downloads.values()):
            await download.close()
        self._downloads.clear()
        if self.p2p:
            await self.announcer.close()
        await self.client.close()
        self.cache.close()

    def gained(self, digest: str, chunk_count: int, bits: int) -> None:
        if self.p2p and bits:
            self.announcer.gained(digest, chunk_count, bits)

    def _dropped(self, holdings: list[Holding]) -> None:
        if self.p2p:
            self.announcer.dropped(holdings)

    def _everything(self) -> list[Holding]:
        return [Holding(digest, count, gained=bits)
                for (digest, count), bits in self.cache.holdings.items()]

    async def read(self, digest: str, recipe: Recipe, offset: int, end: int
                   ) -> AsyncGenerator[bytes, None]:
        download = self._downloads.get(digest)
        if download is None or download.error is not None:
            download = Download(self, digest, recipe)
            self._downloads[digest] = download
            download.start()
        try:
            async for piece in download.read(offset, end):
                yield piece
        finally:
            if download.readers == 0:
                # The last reader of a pull ends it (one that failed may have been replaced
                # meanwhile: it is closed all the same).
                if self._downloads.get(digest) is download:
                    del self._downloads[digest]
                # Not cancelled with the reader that ends it: clean-up must finish.
                await asyncio.shield(download.close())
