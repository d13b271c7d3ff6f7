"""One garbage collection run, in order: blobs, then the chunks they leave unreferenced,
then packs. A dry run stops after planning; a real run carries the plan out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from node.gc.blobs import BlobSweeper
from node.gc.chunks import ChunkSweeper, LiveCheck, no_other_holder
from node.gc.compaction import Compaction, Compactor, StepHook, _no_hook
from node.gc.pacing import Pacer, Stopped
from node.gc.plan import Plan, going_blobs, make_plan
from node.local import LocalNode

log = logging.getLogger(__name__)

GRACE_SECONDS = 3600.0
INTERVAL_SECONDS = 3600.0
COMPACT_BELOW = 0.5    # live share under which a pack is rewritten
LISTED_BLOBS = 1000    # digests a report names at most


@dataclass(frozen=True, slots=True)
class GcConfig:
    grace_ms: int = int(GRACE_SECONDS * 1000)
    compact_below: float = COMPACT_BELOW
    duty: float = 0.5   # share of the time a run may work; it rests the rest


@dataclass(slots=True)
class GcReport:
    dry_run: bool
    blobs_deleted: int = 0
    blob_bytes: int = 0
    chunks_deleted: int = 0
    chunk_bytes: int = 0
    packs_compacted: int = 0
    bytes_moved: int = 0
    disk_bytes_reclaimed: int = 0
    blobs_waiting: int = 0
    chunks_waiting: int = 0
    seconds: float = 0.0
    blobs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class GcTotals:
    """Counters since the node started, for its metrics."""

    runs: int = 0
    failures: int = 0
    blobs_deleted: int = 0
    chunks_deleted: int = 0
    chunk_bytes: int = 0
    disk_bytes_reclaimed: int = 0
    packs_compacted: int = 0
    last_seconds: float = 0.0


T = TypeVar("T")


async def in_own_thread(work: Callable[[], T]) -> T:
    """Run `work` in a thread of its own: a run lasts seconds to minutes, and one waiting
    for another would otherwise sit on a worker of the pool every index call shares."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(outcome: T | BaseException, failed: bool) -> None:
        if done.done():
            return  # the caller went away; the run still finished
        if failed:
            assert isinstance(outcome, BaseException)
            done.set_exception(outcome)
        else:
            done.set_result(outcome)  # type: ignore[arg-type]

    def run() -> None:
        outcome: T | BaseException
        failed = False
        try:
            outcome = work()
        except BaseException as exc:
            outcome, failed = exc, True
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits
            loop.call_soon_threadsafe(settle, outcome, failed)

    threading.Thread(target=run, name="shoal-gc", daemon=True).start()
    return await done


def carry_out_packs(compactor: Compactor, plan: Plan, pacer: Pacer,
                    report: GcReport) -> None:
    """Trim and compact the packs `plan` names, and say so in `report`."""
    done = Compaction()
    compactor.trim(sorted(plan.tails), done)
    compactor.compact([p.number for p in plan.packs], pacer, done)
    report.packs_compacted = len(done.compacted)
    report.bytes_moved = done.moved_bytes
    report.disk_bytes_reclaimed = max(0, done.trimmed_bytes + done.freed_bytes
                                      - done.moved_bytes)
    if done.skipped:
        log.info("packs left for the next run (busy or holding unreadable chunks): %s",
                 ", ".join(map(str, done.skipped)))


def report_plan(report: GcReport, plan: Plan) -> None:
    """What a dry run reports: the plan, as if carried out."""
    report.blobs_deleted = len(plan.blobs)
    report.blob_bytes = plan.blob_bytes
    report.chunks_deleted = len(plan.chunks)
    report.chunk_bytes = plan.chunk_bytes
    report.packs_compacted = len(plan.packs)
    report.bytes_moved = sum(p.live for p in plan.packs)
    report.disk_bytes_reclaimed = plan.disk_bytes
    report.blobs = [d for d, _ in plan.blobs[:LISTED_BLOBS]]


class GarbageCollector:
    """Collects a LocalNode's garbage, one run at a time, while it serves."""

    def __init__(self, node: LocalNode, config: GcConfig | None = None,
                 is_live: LiveCheck = no_other_holder, on_step: StepHook = _no_hook) -> None:
        self._node = node
        self.config = config or GcConfig()
        self._is_live = is_live
        self._blobs = BlobSweeper(node.index, node.chunks)
        self._chunks = ChunkSweeper(node.index, node.chunks)
        self._compactor = Compactor(node.chunks, on_step)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.totals = GcTotals()

    async def collect(self, dry_run: bool = False) -> GcReport:
        return await in_own_thread(lambda: self.run(dry_run))

    def stop(self) -> None:
        """Make a run in progress end at its next pause, and refuse new ones."""
        self._stop.set()

    def wait_idle(self) -> None:
        with self._lock:
            pass

    def run(self, dry_run: bool = False) -> GcReport:
        with self._lock:
            if self._stop.is_set():
                raise Stopped
            started = time.monotonic()
            pacer = Pacer(self.config.duty, stop=self._stop)
            try:
                report = self._run(dry_run, pacer)
            except Stopped:
                log.info("garbage collection stopped: the node is shutting down")
                raise
            except Exception:
                if not dry_run:
                    self.totals.failures += 1
                raise
            report.seconds = time.monotonic() - started
            if not dry_run:
                self._count(report)
            return report

    def _count(self, report: GcReport) -> None:
        t = self.totals
        t.runs += 1
        t.blobs_deleted += report.blobs_deleted
        t.chunks_deleted += report.chunks_deleted
        t.chunk_bytes += report.chunk_bytes
        t.disk_bytes_reclaimed += report.disk_bytes_reclaimed
        t.packs_compacted += report.packs_compacted
        t.last_seconds = report.seconds
        log.info("garbage collection: %d blobs, %d chunks (%d bytes) deleted, %d packs "
                 "compacted, %d bytes of disk back, in %.1f s", report.blobs_deleted,
                 report.chunks_deleted, report.chunk_bytes, report.packs_compacted,
                 report.disk_bytes_reclaimed, report.seconds)

    def _run(self, dry_run: bool, pacer: Pacer) -> GcReport:
        if not dry_run:
            self._compactor.reclaim()  # packs a previous run left to readers
        plan = self.plan(dry_run, pacer)
        report = GcReport(dry_run, blobs_waiting=plan.blobs_waiting,
                          chunks_waiting=plan.chunks_waiting)
        if dry_run:
            report_plan(report, plan)
            return report
        deleted = self._blobs.delete(plan.blobs, pacer)
        report.blobs_deleted = len(deleted)
        report.blob_bytes = sum(b.size for b in deleted)
        report.blobs = [b.digest for b in deleted[:LISTED_BLOBS]]
        # Chunks the deletions just brought to zero were stamped now: the cutoff is taken
        # after them, so with no grace they go in this same run, as the plan said.
        cutoff = self._node.chunks.clock() - self.config.grace_ms
        swept = self._chunks.sweep(plan.chunks, cutoff, pacer, self._is_live)
        report.chunks_deleted = swept.count
        report.chunk_bytes = swept.stored_bytes
        carry_out_packs(self._compactor, plan, pacer, report)
        return report

    def plan(self, dry_run: bool, pacer: Pacer) -> Plan:
        """Survey the node and work out what goes. A real run first stamps what it finds
        newly unreferenced, and surveys blobs again after (see node/gc/blobs.py)."""
        node = self._node
        survey = self._blobs.survey() if dry_run else self._blobs.restamp(pacer)
        chunks = self._chunks.survey(pacer)
        if not dry_run:
            stale = sorted(c for c in chunks.stamps if c not in chunks.zero)
            fresh_chunks = sorted(c for c in chunks.zero if c not in chunks.stamps)
            if stale:
                self._chunks.forget(stale, pacer)
            if fresh_chunks:
                self._chunks.stamp(fresh_chunks, pacer)
            if stale or fresh_chunks:
                chunks.stamps = self._chunks.stamps()
        now = node.chunks.clock()
        cutoff = now - self.config.grace_ms
        going, waiting = going_blobs(survey, now, cutoff)
        recipes = self._blobs.recipes([d for d, _ in going])
        ids = sorted({cid for r in recipes.values() for cid in r.ids})
        dropped = self._chunks.entries(ids)
        packs = node.packs
        sizes = {n: packs.size(n) for n in packs.numbers()}
        return make_plan(going, waiting, recipes, chunks, dropped, now, cutoff, sizes,
                         node.chunks.pack_ends(), packs.current, self.config.compact_below,
                         self._is_live)
