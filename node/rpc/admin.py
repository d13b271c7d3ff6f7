"""The Admin gRPC service (garbage collection on demand) and its client.

`shoal node` serves it beside the storage services; `shoal serve`, which has no gRPC port,
serves it on a unix socket inside its data folder (`admin.sock`, mode 0600: whoever may
write the data folder may collect it), so `shoal gc --data DIR` reaches a running registry
with no port and no credentials to configure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc

from node.gc.collector import GarbageCollector, GcReport
from node.gc.pacing import Stopped
from node.rpc.options import GRPC_OPTIONS
from node.rpc.tls import TlsFiles
from shoal.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)

SOCKET_NAME = "admin.sock"
# A collection of a large node takes minutes; an operator's call waits for it, not forever.
GC_DEADLINE = 3600.0

Ctx = grpc.aio.ServicerContext[Any, Any]


def report_to_pb(report: GcReport) -> admin_pb2.GarbageReport:
    return admin_pb2.GarbageReport(
        dry_run=report.dry_run, blobs_deleted=report.blobs_deleted,
        blob_bytes=report.blob_bytes, chunks_deleted=report.chunks_deleted,
        chunk_bytes=report.chunk_bytes, packs_compacted=report.packs_compacted,
        bytes_moved=report.bytes_moved, disk_bytes_reclaimed=report.disk_bytes_reclaimed,
        blobs_waiting=report.blobs_waiting, chunks_waiting=report.chunks_waiting,
        seconds=report.seconds, blobs=report.blobs)


def report_from_pb(reply: admin_pb2.GarbageReport) -> GcReport:
    return GcReport(
        dry_run=reply.dry_run, blobs_deleted=reply.blobs_deleted, blob_bytes=reply.blob_bytes,
        chunks_deleted=reply.chunks_deleted, chunk_bytes=reply.chunk_bytes,
        packs_compacted=reply.packs_compacted, bytes_moved=reply.bytes_moved,
        disk_bytes_reclaimed=reply.disk_bytes_reclaimed, blobs_waiting=reply.blobs_waiting,
        chunks_waiting=reply.chunks_waiting, seconds=reply.seconds, blobs=list(reply.blobs))


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(self, gc: GarbageCollector) -> None:
        self.gc = gc

    async def CollectGarbage(self, request: admin_pb2.CollectGarbageRequest, context: Ctx
                             ) -> admin_pb2.GarbageReport:
        try:
            report = await self.gc.collect(request.dry_run)
        except Stopped:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the node is shutting down")
            raise AssertionError("unreachable") from None
        except Exception as exc:
            log.exception("garbage collection failed")
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            raise AssertionError("unreachable") from None
        return report_to_pb(report)


def add_admin(server: grpc.aio.Server, gc: GarbageCollector) -> None:
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(gc), server)


def socket_target(data_dir: Path) -> str:
    return f"unix:{(data_dir / SOCKET_NAME).resolve()}"


async def serve_admin_socket(gc: GarbageCollector, data_dir: Path,
                             extra: Sequence[Callable[[grpc.aio.Server], object]] = ()
                             ) -> grpc.aio.Server:
    """Serve Admin on `<data_dir>/admin.sock` (a stale socket from a killed run is
    replaced), with whatever `extra` adds (the Registry service, for `shoal retention`)."""
    path = (data_dir / SOCKET_NAME).resolve()
    path.unlink(missing_ok=True)
    server = grpc.aio.server(options=GRPC_OPTIONS)
    add_admin(server, gc)
    for add in extra:
        add(server)
    old = os.umask(0o177)  # the socket is created 0600: never a moment open to others
    try:
        if server.add_insecure_port(f"unix:{path}") == 0:
            raise OSError(f"cannot listen on {path}")
    finally:
        os.umask(old)
    await server.start()
    return server


async def collect_garbage(target: str, dry_run: bool, deadline: float = GC_DEADLINE,
                          tls: TlsFiles | None = None) -> GcReport:
    """Run a collection on the node at `target` ("HOST:PORT" or "unix:PATH")."""
    if tls is not None:
        channel = grpc.aio.secure_channel(target, tls.channel_credentials(),
                                          options=GRPC_OPTIONS)
    else:
        channel = grpc.aio.insecure_channel(target, options=GRPC_OPTIONS)
    try:
        stub = admin_pb2_grpc.AdminStub(channel)
        reply = await stub.CollectGarbage(admin_pb2.CollectGarbageRequest(dry_run=dry_run),
                                          timeout=deadline)
        return report_from_pb(reply)
    finally:
        await channel.close(None)
