"""The Cluster gRPC service a node serves: its status, and its side of anti-entropy."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

from node.cluster.membership import Membership
from node.cluster.repair import Repairer
from node.local import LocalNode
from node.rpc.server import Ctx, streaming, unary
from shoal.v1 import cluster_pb2, cluster_pb2_grpc

EXPORT_BATCH = 512


class ClusterService(cluster_pb2_grpc.ClusterServicer):
    def __init__(self, node: LocalNode, member_id: str, members: Membership | None = None,
                 repairer: Repairer | None = None) -> None:
        self.node = node
        self.member_id = member_id
        self.members = members
        self.repairer = repairer
        self.started_ms = int(time.time() * 1000)

    @unary
    async def Status(self, request: cluster_pb2.StatusRequest, context: Ctx
                     ) -> cluster_pb2.NodeStatus:
        stats = await asyncio.to_thread(self.node.stats)
        free = (await asyncio.to_thread(shutil.disk_usage, self.node.data_dir)).free
        reply = cluster_pb2.NodeStatus(
            id=self.member_id, role="node", chunks=stats.chunks, blobs=stats.blobs,
            pack_bytes=stats.pack_bytes, index_bytes=stats.index_bytes, disk_free_bytes=free,
            corrupt_chunks=stats.corrupt_chunks, started_ms=self.started_ms)
        if self.repairer is not None:
            r = self.repairer.stats
            reply.under_replicated = r.under_replicated
            reply.last_repair_ms = r.last_pass_ms
            reply.repaired_chunks = r.repaired_chunks
            reply.repaired_bytes = r.repaired_bytes
            reply.scrubbed_chunks = r.scrubbed_chunks
            reply.last_scrub_ms = r.last_scrub_ms
            reply.repair_view.extend(r.view)
            reply.last_pass_began_ms = r.pass_began_ms
        if self.members is not None:
            reply.live_members.extend(p.id for p in self.members.live())
        return reply

    @streaming
    async def ExportRepository(self, request: cluster_pb2.ExportRequest, context: Ctx
                               ) -> AsyncIterator[cluster_pb2.MetadataBatch]:
        entries = await asyncio.to_thread(self.node.registry.export, request.repository)
        for start in range(0, len(entries), EXPORT_BATCH):
            yield cluster_pb2.MetadataBatch(entries=[
                cluster_pb2.MetadataEntry(table=t, key=k, value=v)
                for t, k, v in entries[start:start + EXPORT_BATCH]])

    @unary
    async def MergeMetadata(self, request: cluster_pb2.MetadataBatch, context: Ctx
                            ) -> cluster_pb2.MergeResponse:
        entries: list[tuple[str, bytes, bytes]] = [(e.table, e.key, e.value)
                                                   for e in request.entries]
        changed = await asyncio.to_thread(self.node.registry.merge, entries)
        return cluster_pb2.MergeResponse(changed=changed)


def add_to(server: Any, service: ClusterService) -> None:
    cluster_pb2_grpc.add_ClusterServicer_to_server(service, server)
