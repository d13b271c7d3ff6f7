"""A node process: the storage node served over gRPC, alone or as a cluster member.

A member also serves the Cluster service, watches the other members, and runs the
repair and scrub loops (node/cluster/repair.py) that keep R good copies of what it holds.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import CollectorRegistry, start_http_server

from node.cluster.chunks import ClusterChunks
from node.cluster.config import ClusterConfig
from node.cluster.gc import collect_cluster_forever
from node.cluster.membership import Membership
from node.cluster.repair import Repairer
from node.cluster.service import ClusterService, add_to
from node.gc.cluster import MemberCollector
from node.gc.collector import INTERVAL_SECONDS, GarbageCollector, GcConfig
from node.janitor import UPLOAD_IDLE_SECONDS, collect_garbage_forever, expire_uploads_forever
from node.local import LocalNode
from node.metrics import NodeCollector
from node.rpc.metrics import RpcCollector
from node.rpc.server import start_server
from node.rpc.tls import TlsFiles
from node.swarm.metrics import OwnerSwarmCollector
from node.swarm.owner import OwnerSwarm
from node.swarm.service import DEFAULT_SERVE_LIMIT

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MemberRole:
    config: ClusterConfig
    member_id: str
    repair_interval: float = 10.0     # seconds between repair passes
    repair_rate: float = 64 << 20     # bytes per second repair may send
    scrub_interval: float = 24 * 3600.0
    scrub_rate: float = 32 << 20      # bytes per second scrub may read


async def serve_node(data_dir: Path, listen: str, grace: float = 10.0,
                     ready: Callable[[int], None] | None = None,
                     upload_idle: float = UPLOAD_IDLE_SECONDS,
                     metrics_listen: tuple[str, int] | None = None,
                     tls: TlsFiles | None = None, member: MemberRole | None = None,
                     gc_config: GcConfig | None = None,
                     gc_interval: float = INTERVAL_SECONDS,
                     serve_limit: int = DEFAULT_SERVE_LIMIT,
                     direct_writes: bool = True) -> None:
    """Run a node until SIGTERM or SIGINT, then drain calls in flight for `grace` seconds.

    The node also serves the swarm: holder lists, and chunks to edges, at most
    `serve_limit` streams at once (node/swarm/).

    A node alone collects garbage every `gc_interval` seconds (never when 0) and on demand.
    A cluster member never collects on its own: its recipes refer to chunks on other
    members and its chunks are referred to by recipes elsewhere, so a local sweep would
    delete live data. It serves its part of a collection across the cluster instead
    (node/gc/cluster.py), run on demand by `shoal gc --cluster` (docs/gc.md), and every
    `gc_interval` by whichever member ranks first (node/cluster/gc.py)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    node = await LocalNode.open(data_dir, verify_puts=True, member=member is not None,
                                direct_writes=direct_writes)
    members = Membership(member.config) if member is not None else None
    repairer = (Repairer(node, members, member.member_id, member.repair_rate)
                if member is not None and members is not None else None)
    service = ClusterService(node, member.member_id if member else "node", members, repairer)

    def add_cluster(server: grpc.aio.Server) -> None:
        add_to(server, service)

    gc = GarbageCollector(node, gc_config) if member is None else None
    member_gc = MemberCollector(node, gc_config) if member is not None else None
    # A member relays to edges the chunks of a blob it owns that other members hold.
    relay = (ClusterChunks(members, exclude=member.member_id)
             if member is not None and members is not None else None)
    swarm = OwnerSwarm(node, serve_limit, relay)
    server, port = await start_server(node, listen, tls, gc, [add_cluster, swarm.add_to],
                                      member_gc)
    log.info("node serving %s on port %d%s", data_dir, port,
             f" as cluster member {member.member_id}" if member else "")
    tasks = [asyncio.create_task(expire_uploads_forever(node, upload_idle))]
    if gc is not None and gc_interval > 0:
        tasks.append(asyncio.create_task(collect_garbage_forever(gc, gc_interval)))
    if member is not None and members is not None and repairer is not None:
        await members.start()
        tasks.append(asyncio.create_task(repairer.run_forever(member.repair_interval)))
        tasks.append(asyncio.create_task(
            repairer.scrub_forever(member.scrub_interval, member.scrub_rate)))
        if gc_interval > 0:
            tasks.append(asyncio.create_task(
                collect_cluster_forever(members, member.member_id, gc_interval)))
    if metrics_listen is not None:
        registry = CollectorRegistry()
        registry.register(NodeCollector(
            node, gc, (lambda: repairer.stats) if repairer is not None else None))
        registry.register(RpcCollector())
        registry.register(OwnerSwarmCollector(lambda: swarm.peer, swarm.book))
        # prometheus-client's own server runs in a thread of its own, off the event loop.
        start_http_server(metrics_listen[1], metrics_listen[0], registry=registry)
        log.info("node metrics on http://%s:%d/metrics", *metrics_listen)
    if ready is not None:
        ready(port)
    await stop.wait()
    log.info("node stopping: draining calls for up to %.0f s", grace)
    if gc is not None:
        gc.stop()
    if member_gc is not None:
        member_gc.stop()
    for task in tasks:
        task.cancel()
    await server.stop(grace)
    if members is not None:
        await members.close()
    if gc is not None:
        # A collection runs in a thread that cancelling does not stop: it ends at its next
        # pause, and must have before the index closes under it.
        await asyncio.to_thread(gc.wait_idle)
    if member_gc is not None:
        await asyncio.to_thread(member_gc.wait_idle)
    await node.close()
