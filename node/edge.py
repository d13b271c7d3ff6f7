"""The edge role: a host's local registry that pulls blobs through the swarm.

An edge is the origin's client API (RemoteNode, or ClusterNode in front of a cluster) in
which blob reads come from the swarm: metadata (manifests, tags, blob stat, recipes) and
every push go to the origin, while a blob's bytes come from the local chunk cache, from
peers, and from the origin only for what no peer has. `serve_edge` runs one: a gateway on
localhost for the host's docker, and a gRPC Peer service that serves the cache to other
edges.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

from node.api import NodeAPI
from node.cluster.client import ClusterNode
from node.cluster.config import ClusterConfig
from node.cluster.membership import Membership
from node.errors import InvalidArgument
from node.recipe import Recipe
from node.rpc.client import RemoteNode
from node.rpc.options import SERVER_OPTIONS
from node.rpc.server import listen_and_start
from node.rpc.tls import TlsFiles
from node.swarm.directory import ClusterOwners, OwnerDirectory, StaticOwners
from node.swarm.edge_swarm import EdgeSwarm
from node.swarm.ratelimit import TokenBucket
from node.swarm.service import PeerService, add_peer_service

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 10 << 30


class _SwarmReads:
    """Blob bytes from the swarm; everything else from the base client. The recipe is
    asked of the origin or the members on every read (36 bytes per ~20 KiB chunk, under
    0.2 % of the blob): a blob deleted there is gone here too, whatever the cache holds."""

    swarm: EdgeSwarm

    if TYPE_CHECKING:  # provided by the client this is mixed into
        async def get_recipe(self, digest: str) -> Recipe: ...

    async def read_blob(self, digest: str, offset: int = 0, length: int | None = None
                        ) -> AsyncIterator[bytes]:
        recipe = await self.get_recipe(digest)
        end = recipe.check_range(offset, length)
        async with contextlib.aclosing(self.swarm.read(digest, recipe, offset, end)) as pieces:
            async for piece in pieces:
                yield piece

    async def close(self) -> None:
        await self.swarm.close()
        await super().close()  # type: ignore[misc]  # the client this is mixed into


class EdgeNode(_SwarmReads, RemoteNode):
    """The origin's client API with blob bytes from the swarm."""

    def __init__(self, swarm: EdgeSwarm, origin: str, tls: TlsFiles | None = None) -> None:
        super().__init__(origin, tls=tls)
        self.swarm = swarm


class ClusterEdgeNode(_SwarmReads, ClusterNode):
    """A cluster's client API with blob bytes from the swarm: metadata, recipes and pushes
    go to the members by placement, as from a gateway (`shoal gateway --cluster`)."""

    def __init__(self, members: Membership, swarm: EdgeSwarm) -> None:
        super().__init__(members)
        self.swarm = swarm


# Peer streams an edge serves at once. Unlike an owner's cap, this one protects nothing
# scarce: a stream costs one message of memory, and every other edge may open PER_PEER.
# At the owner's 8, the edge that took piece 0 from the origin answered most of the swarm
# busy for it, and every host's first byte waited a second or more.
EDGE_SERVE_LIMIT = 64


async def start_peer_server(swarm: EdgeSwarm, listen: str, limit: int = EDGE_SERVE_LIMIT,
                            tls: TlsFiles | None = None, upload_limit: int | None = None
                            ) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    bucket = TokenBucket(upload_limit) if upload_limit else None
    swarm.peer = PeerService(swarm.cache, limit, upload=bucket)
    add_peer_service(server, swarm.peer)
    return server, await listen_and_start(server, listen, tls, ["", "shoal.v1.Peer"])


def advertised(peer_listen: str, port: int, advertise: str | None) -> str:
    """The address peers are told: --advertise, else --peer-listen with the bound port."""
    if advertise:
        return advertise
    host = peer_listen.rpartition(":")[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        raise InvalidArgument("--peer-listen on every interface needs --advertise IP:PORT")
    return f"{host}:{port}"


async def serve_edge(data: Path, listen: tuple[str, int], peer_listen: str,
                     origins: Sequence[str], until: Awaitable[object], *,
                     advertise: str | None = None, p2p: bool = True,
                     cache_bytes: int = DEFAULT_CACHE_BYTES,
                     owners: OwnerDirectory | None = None,
                     cluster: ClusterConfig | None = None,
                     serve_limit: int = EDGE_SERVE_LIMIT,
                     tls: TlsFiles | None = None,
                     upload_limit: int | None = None) -> None:
    """Run an edge of `origins` (the first takes metadata and pushes), or with `cluster`
    of that cluster: placement then says which members own a blob. Mutual TLS (`tls`
    with origins, the cluster's own with `cluster`) covers the edge's calls to owners and
    to other edges and its own Peer service."""
    from gateway.metrics import GatewayMetrics
    from gateway.server import run_gateway
    from node.swarm.metrics import EdgeCollector

    members: Membership | None = None
    directory: OwnerDirectory
    if cluster is not None:
        members = Membership(cluster)
        await members.start()
        placed = ClusterOwners(members)
        directory, seeds, tls = placed, placed.everyone(), cluster.tls
    else:
        directory = StaticOwners(origins)
        seeds = list(origins)
    if owners is not None:
        directory = owners
    # The address is known once the peer server is bound: the swarm is told it then.
    swarm = EdgeSwarm(data / "cache", cache_bytes, directory, "", p2p=p2p, tls=tls,
                      seeds=seeds)
    # The cache first: a folder another edge uses stops this one before it listens.
    await swarm.cache.open()
    server, port = await start_peer_server(swarm, peer_listen, serve_limit, tls=tls,
                                           upload_limit=upload_limit)
    swarm.address = swarm.announcer.address = advertised(peer_listen, port, advertise)
    await swarm.open()
    node: NodeAPI = (ClusterEdgeNode(members, swarm) if members is not None
                     else EdgeNode(swarm, origins[0], tls=tls))
    metrics = GatewayMetrics()
    metrics.registry.register(EdgeCollector(swarm))
    log.info("edge: peers reach it at %s%s; %s; p2p %s", swarm.address,
             " (TLS)" if tls is not None else "",
             f"cluster of {len(seeds)} members" if members is not None
             else "origin " + ", ".join(origins), "on" if p2p else "off")
    try:
        await run_gateway(node, listen[0], listen[1], until, metrics=metrics)
    finally:
        await node.close()
        await server.stop(2.0)
