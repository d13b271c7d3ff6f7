"""The Admin gRPC service (garbage collection on demand) and its client.

A cluster member serves Admin too, but only the calls of a collection across the
cluster (LiveBlobs, SweepBlobs, SweepChunks: node/gc/cluster.py); CollectGarbage there
is refused, since no member can tell its garbage alone.

`shoal node` serves it beside the storage services; `shoal serve`, which has no gRPC port,
serves it on a unix socket inside its data folder (`admin.sock`, mode 0600: whoever may
write the data folder may collect it), so `shoal gc --data DIR` reaches a running registry
with no port and no credentials to configure.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc

from node.gc.bloom import ChunkFilter
from node.gc.cluster import MemberCollector
from node.gc.collector import GarbageCollector, GcReport
from node.gc.pacing import Stopped
from node.rpc.options import GRPC_OPTIONS, SERVER_OPTIONS
from node.rpc.tls import TlsFiles
from shoal.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger(__name__)

SOCKET_NAME = "admin.sock"
# A collection of a large node takes minutes; an operator's call waits for it, not forever.
GC_DEADLINE = 3600.0

DIGESTS_PER_MESSAGE = 4096  # about 300 KiB of digests per message

Ctx = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")


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
    """`gc` on a node alone, `member` on a cluster member: never both."""

    def __init__(self, gc: GarbageCollector | None, member: MemberCollector | None = None
                 ) -> None:
        self.gc = gc
        self.member = member

    async def CollectGarbage(self, request: admin_pb2.CollectGarbageRequest, context: Ctx
                             ) -> admin_pb2.GarbageReport:
        if self.gc is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this node is a cluster member: collect the whole cluster "
                                "with `shoal gc --cluster FILE` (docs/gc.md)")
            raise AssertionError("unreachable")
        gc = self.gc
        return report_to_pb(await _guarded(context, gc.collect(request.dry_run)))

    async def _member(self, context: Ctx) -> MemberCollector:
        if self.member is None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                "this node is not a cluster member: `shoal gc` collects it")
            raise AssertionError("unreachable")
        return self.member

    async def LiveBlobs(self, request: admin_pb2.LiveBlobsRequest, context: Ctx
                        ) -> AsyncIterator[admin_pb2.LiveBlobsReply]:
        member = await self._member(context)
        live, chunks = await _guarded(context, member.live_blobs())
        yield admin_pb2.LiveBlobsReply(digests=live[:DIGESTS_PER_MESSAGE], chunks=chunks)
        for start in range(DIGESTS_PER_MESSAGE, len(live), DIGESTS_PER_MESSAGE):
            yield admin_pb2.LiveBlobsReply(digests=live[start:start + DIGESTS_PER_MESSAGE])

    async def SweepBlobs(self, request_iterator: AsyncIterator[admin_pb2.SweepBlobsRequest],
                         context: Ctx) -> AsyncIterator[admin_pb2.SweepBlobsReply]:
        member = await self._member(context)
        first: admin_pb2.SweepBlobsRequest | None = None
        live: set[str] = set()
        async for request in request_iterator:
            first = first or request
            live.update(request.live)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no settings were sent")
            raise AssertionError("unreachable")
        settings = first
        try:
            ChunkFilter(settings.filter_bits, settings.filter_hashes)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        report, used = await _guarded(context, member.sweep_blobs(
            frozenset(live), settings.dry_run, settings.filter_bits, settings.filter_hashes))
        yield admin_pb2.SweepBlobsReply(report=report_to_pb(report))
        for piece in used.pieces():
            yield admin_pb2.SweepBlobsReply(filter=piece)

    async def SweepChunks(self, request_iterator: AsyncIterator[admin_pb2.SweepChunksRequest],
                          context: Ctx) -> admin_pb2.GarbageReport:
        member = await self._member(context)
        first: admin_pb2.SweepChunksRequest | None = None
        pieces: list[bytes] = []
        async for request in request_iterator:
            first = first or request
            pieces.append(request.filter)
        if first is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no settings were sent")
            raise AssertionError("unreachable")
        try:
            used = ChunkFilter.join(first.filter_bits, first.filter_hashes, pieces)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise AssertionError("unreachable") from None
        return report_to_pb(await _guarded(context, member.sweep_chunks(used, first.dry_run)))


async def _guarded(context: Ctx, work: Awaitable[T]) -> T:
    """The outcome of a collection step, or the call aborted with why it failed."""
    try:
        return await work
    except Stopped:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "the node is shutting down")
        raise AssertionError("unreachable") from None
    except Exception as exc:
        log.exception("garbage collection failed")
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable") from None


def add_admin(server: grpc.aio.Server, gc: GarbageCollector | None,
              member: MemberCollector | None = None) -> None:
    admin_pb2_grpc.add_AdminServicer_to_server(AdminService(gc, member), server)


def socket_target(data_dir: Path) -> str:
    return f"unix:{(data_dir / SOCKET_NAME).resolve()}"


async def serve_admin_socket(gc: GarbageCollector, data_dir: Path,
                             extra: Sequence[Callable[[grpc.aio.Server], object]] = ()
                             ) -> grpc.aio.Server:
    """Serve Admin on `<data_dir>/admin.sock` (a stale socket from a killed run is
    replaced), with whatever `extra` adds (the Registry service, for `shoal retention`)."""
    path = (data_dir / SOCKET_NAME).resolve()
    path.unlink(missing_ok=True)
    server = grpc.aio.server(options=SERVER_OPTIONS)
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
