"""The coordinator of a collection across a cluster (`shoal gc --cluster FILE`).

Mark and sweep over every member, each step a call to the members' Admin service
(node/gc/cluster.py says what each does):
1. every member's live blobs, unioned: the cluster's live set;
2. every member sweeps its recipes against it and answers with a filter of the chunks
   its remaining recipes and uploads use; the filters are unioned;
3. every member sweeps its chunks against that union, then compacts its packs.

A member that does not answer step 1 holds recipes nobody knows of, so nothing is swept
anywhere; one that fails step 2 leaves its chunks in use unknown, so no chunk is swept
anywhere. Both stop the run with the members that failed and why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import grpc

from node.cluster import placement
from node.cluster.config import ClusterConfig, Member
from node.cluster.membership import Membership
from node.gc.bloom import HASHES, ChunkFilter, size_for
from node.gc.collector import GcReport
from node.rpc.admin import GC_DEADLINE, report_from_pb
from node.rpc.options import CLIENT_OPTIONS
from shoal.v1 import admin_pb2, admin_pb2_grpc

if TYPE_CHECKING:
    from shoal.v1.admin_pb2_grpc import AdminAsyncStub

T = TypeVar("T")

log = logging.getLogger(__name__)

DIGESTS_PER_MESSAGE = 4096
COORDINATOR_KEY = "shoal/garbage-collection"   # ranked like a repository name


class ClusterGcRefused(Exception):
    """The run stopped before sweeping what it could not prove garbage."""


@dataclass(slots=True)
class ClusterGcReport:
    dry_run: bool
    members: dict[str, GcReport] = field(default_factory=dict)
    live_blobs: int = 0        # the cluster's live set
    filter_bytes: int = 0      # size of the chunk filter each member was sent
    seconds: float = 0.0

    @property
    def total(self) -> GcReport:
        total = GcReport(self.dry_run, seconds=self.seconds)
        for r in self.members.values():
            total.blobs_deleted += r.blobs_deleted
            total.blob_bytes += r.blob_bytes
            total.chunks_deleted += r.chunks_deleted
            total.chunk_bytes += r.chunk_bytes
            total.packs_compacted += r.packs_compacted
            total.bytes_moved += r.bytes_moved
            total.disk_bytes_reclaimed += r.disk_bytes_reclaimed
            total.blobs_waiting += r.blobs_waiting
            total.chunks_waiting += r.chunks_waiting
        return total


def _channel(member: Member, config: ClusterConfig) -> grpc.aio.Channel:
    if config.tls is not None:
        return grpc.aio.secure_channel(member.address, config.tls.channel_credentials(),
                                       options=CLIENT_OPTIONS)
    return grpc.aio.insecure_channel(member.address, options=CLIENT_OPTIONS)


def _why(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


async def _every(calls: dict[str, Awaitable[T]]) -> tuple[dict[str, T], dict[str, str]]:
    """Each member's answer, and why each member that failed did."""
    ids = list(calls)
    outcomes = await asyncio.gather(*calls.values(), return_exceptions=True)
    answers: dict[str, T] = {}
    failures: dict[str, str] = {}
    for mid, outcome in zip(ids, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome  # a cancellation: not a member's failure
            failures[mid] = _why(outcome)
        else:
            answers[mid] = outcome
    return answers, failures


def _failed(failures: dict[str, str]) -> str:
    return "; ".join(f"{mid} ({why})" for mid, why in sorted(failures.items()))


async def collect_cluster(config: ClusterConfig, dry_run: bool,
                          deadline: float = GC_DEADLINE) -> ClusterGcReport:
    """Run one collection across every member of `config`; `deadline` bounds each step."""
    started = time.monotonic()
    channels = {m.id: _channel(m, config) for m in config.members}
    try:
        stubs = {mid: admin_pb2_grpc.AdminStub(ch) for mid, ch in channels.items()}
        marks, failures = await _every({mid: _live_blobs(stub, deadline)
                                        for mid, stub in stubs.items()})
        if failures:
            raise ClusterGcRefused(
                f"nothing was collected: every member must answer the mark, since the "
                f"recipes of one that does not are unknown, and their chunks with them; "
                f"no answer from {_failed(failures)}")
        live = frozenset(d for digests, _ in marks.values() for d in digests)
        # Every chunk in use is stored on some member, so the members' chunk counts bound
        # the filter's contents (by R times over: fewer false positives, never more).
        bits = size_for(sum(chunks for _, chunks in marks.values()))
        report = ClusterGcReport(dry_run, live_blobs=len(live), filter_bytes=bits // 8)
        swept, failures = await _every({mid: _sweep_blobs(stub, live, dry_run, bits, deadline)
                                        for mid, stub in stubs.items()})
        if failures:
            raise ClusterGcRefused(
                f"no chunk was collected: {_failed(failures)} failed to sweep its blobs, so "
                f"the chunks its recipes use are unknown" + _done_on(swept, dry_run))
        used = ChunkFilter(bits, HASHES)
        for mid in sorted(swept):
            blobs, member_filter = swept[mid]
            used.merge(member_filter)
            report.members[mid] = blobs
        chunks, failures = await _every({mid: _sweep_chunks(stub, used, dry_run, deadline)
                                         for mid, stub in stubs.items()})
        for mid, chunk_report in chunks.items():
            _add_chunks(report.members[mid], chunk_report)
        if failures:
            raise ClusterGcRefused(f"{_failed(failures)} failed to sweep its chunks; the "
                                   f"other members finished their run")
        report.seconds = time.monotonic() - started
        for r in report.members.values():
            r.seconds = report.seconds
        return report
    finally:
        await asyncio.gather(*(ch.close(None) for ch in channels.values()))


def _done_on(swept: dict[str, tuple[GcReport, ChunkFilter]], dry_run: bool) -> str:
    if dry_run or not swept:
        return ""
    return (" (blobs were collected on " + ", ".join(
        f"{mid}: {r.blobs_deleted}" for mid, (r, _) in sorted(swept.items())) + ")")


def _add_chunks(report: GcReport, chunks: GcReport) -> None:
    report.chunks_deleted = chunks.chunks_deleted
    report.chunk_bytes = chunks.chunk_bytes
    report.chunks_waiting = chunks.chunks_waiting
    report.packs_compacted = chunks.packs_compacted
    report.bytes_moved = chunks.bytes_moved
    report.disk_bytes_reclaimed = chunks.disk_bytes_reclaimed


async def _live_blobs(stub: AdminAsyncStub, deadline: float
                      ) -> tuple[list[str], int]:
    digests: list[str] = []
    chunks = 0
    call = stub.LiveBlobs(admin_pb2.LiveBlobsRequest(), timeout=deadline)
    async for reply in call:
        digests.extend(reply.digests)
        chunks = max(chunks, reply.chunks)
    return digests, chunks


async def _sweep_blobs(stub: AdminAsyncStub, live: frozenset[str], dry_run: bool,
                       bits: int, deadline: float) -> tuple[GcReport, ChunkFilter]:
    ordered: Sequence[str] = sorted(live)

    async def requests() -> AsyncIterator[admin_pb2.SweepBlobsRequest]:
        yield admin_pb2.SweepBlobsRequest(dry_run=dry_run, filter_bits=bits,
                                          filter_hashes=HASHES)
        for start in range(0, len(ordered), DIGESTS_PER_MESSAGE):
            yield admin_pb2.SweepBlobsRequest(
                live=ordered[start:start + DIGESTS_PER_MESSAGE])

    report: GcReport | None = None
    pieces: list[bytes] = []
    call = stub.SweepBlobs(requests(), timeout=deadline)
    async for reply in call:
        if reply.HasField("report"):
            report = report_from_pb(reply.report)
        else:
            pieces.append(reply.filter)
    if report is None:
        raise ClusterGcRefused("the member answered no report")
    return report, ChunkFilter.join(bits, HASHES, pieces)


async def _sweep_chunks(stub: AdminAsyncStub, used: ChunkFilter, dry_run: bool,
                        deadline: float) -> GcReport:
    async def requests() -> AsyncIterator[admin_pb2.SweepChunksRequest]:
        yield admin_pb2.SweepChunksRequest(dry_run=dry_run, filter_bits=used.bits,
                                           filter_hashes=used.hashes)
        for piece in used.pieces():
            yield admin_pb2.SweepChunksRequest(filter=piece)

    return report_from_pb(await stub.SweepChunks(requests(), timeout=deadline))


async def collect_cluster_forever(members: Membership, self_id: str, interval: float) -> None:
    """Run a collection across the cluster every `interval` seconds from one member: the
    first live member in the rendezvous order of a fixed key, so every member agrees which
    one coordinates without electing anyone, and another takes over when it is down. Two
    members that briefly disagree both run: a run is safe to repeat, only wasted."""
    while True:
        await asyncio.sleep(interval)
        order = members.write_order(placement.REPOSITORY, COORDINATOR_KEY)
        if not order or order[0].id != self_id:
            continue
        try:
            report = await collect_cluster(members.config, dry_run=False)
        except ClusterGcRefused as exc:
            log.warning("scheduled cluster garbage collection refused: %s", exc)
            continue
        except Exception:
            log.exception("scheduled cluster garbage collection failed")
            continue
        log.info("coordinated a garbage collection across the cluster: %d blobs, %d chunks, "
                 "%d disk bytes reclaimed",
                 sum(r.blobs_deleted for r in report.members.values()),
                 sum(r.chunks_deleted for r in report.members.values()),
                 sum(r.disk_bytes_reclaimed for r in report.members.values()))
