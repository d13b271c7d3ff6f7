"""The swarm duties of an owner node: its holder book and its capped Peer service."""

from __future__ import annotations

import grpc

from node.local import LocalNode
from node.swarm.holders import HolderBook
from node.swarm.service import DEFAULT_SERVE_LIMIT, PeerService, add_owner_services


class OwnerSwarm:
    def __init__(self, node: LocalNode, serve_limit: int = DEFAULT_SERVE_LIMIT) -> None:
        self.node = node
        self.book = HolderBook()
        self.serve_limit = serve_limit
        self.peer: PeerService | None = None

    async def _chunk_count(self, digest: str) -> int | None:
        info = await self.node.stat_blob(digest)
        return info.chunk_count if info is not None else None

    def add_to(self, server: grpc.aio.Server) -> None:
        self.peer = add_owner_services(server, self.node, self.book, self._chunk_count,
                                       self.serve_limit)
