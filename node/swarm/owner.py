"""The swarm duties of an owner node: its holder book and its capped Peer service.

In a cluster, an edge asks a blob's owners (placement.BLOB) for the blob's pieces, but
each chunk lives on its own owners (placement.CHUNK): the Peer service of a member serves
the chunks it holds from its disk and relays the others from the members that hold them
(`MemberChunks`). docs/p2p.md says why the blob's owner answers rather than each chunk's:
the holder book, and so the redirects that make the cluster send a chunk about once, is
kept by the blob's owners.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import grpc

from node.api import StoredChunk
from node.cluster.chunks import ClusterChunks
from node.local import LocalNode
from node.swarm.holders import HolderBook
from node.swarm.service import DEFAULT_SERVE_LIMIT, ChunkReader, PeerService, add_owner_services

RELAY_WINDOW = 64           # chunks (~1.3 MiB) asked of other members at a time


class MemberChunks:
    """A member's chunks for its Peer service: from its own store when it holds them,
    else read (and verified) from the chunk's owners, in the order asked."""

    def __init__(self, node: LocalNode, cluster: ClusterChunks) -> None:
        self.node = node
        self.cluster = cluster

    async def get_chunks(self, ids: Sequence[bytes]) -> AsyncIterator[StoredChunk]:
        ids = list(ids)
        held = [n is not None for n in await self.node.chunk_lengths(ids)]
        start = 0
        while start < len(ids):
            end = start
            while end < len(ids) and held[end] == held[start]:
                end += 1
            if held[start]:
                async for chunk in self.node.get_chunks(ids[start:end]):
                    yield chunk
            else:
                for at in range(start, end, RELAY_WINDOW):
                    for chunk, _ in await self.cluster.fetch(ids[at:min(end, at + RELAY_WINDOW)]):
                        yield chunk
            start = end


class OwnerSwarm:
    def __init__(self, node: LocalNode, serve_limit: int = DEFAULT_SERVE_LIMIT,
                 cluster: ClusterChunks | None = None) -> None:
        self.node = node
        self.book = HolderBook()
        self.serve_limit = serve_limit
        self.source: ChunkReader = node if cluster is None else MemberChunks(node, cluster)
        self.peer: PeerService | None = None

    async def _chunk_count(self, digest: str) -> int | None:
        info = await self.node.stat_blob(digest)
        return info.chunk_count if info is not None else None

    def add_to(self, server: grpc.aio.Server) -> None:
        self.peer = add_owner_services(server, self.source, self.book, self._chunk_count,
                                       self.serve_limit)
