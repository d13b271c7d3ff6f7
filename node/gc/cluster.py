"""A cluster member's part in a collection across the cluster (docs/gc.md).

No member can tell garbage alone: its recipes use chunks on other members, and its
chunks are used by recipes elsewhere (node/blobs.py, DetachedRefs). So a coordinator
(node/cluster/gc.py) marks and every member sweeps, in three calls:

1. `live_blobs`: the blobs this member's registry tables keep alive. The union over the
   members is the cluster's live set (a repository's metadata lives on its owners).
2. `sweep_blobs`: recipes outside that union are stamped, and deleted once the stamp is
   older than the grace period (BlobSweeper, as on a single node); the answer is a filter
   of every chunk the remaining recipes and the upload sessions here use.
3. `sweep_chunks`: against the union of those filters, chunks in use lose their stamp,
   others are stamped, and stamped ones older than the grace period go, re-checked in
   the sweep's transaction; then packs are compacted as on a single node.

A chunk written by a push whose recipe is not committed yet is in no filter: its stamp,
taken here after the write, and the grace period protect it, and `has` answering present
clears the stamp (node/chunkstore.py), since the writer then skips sending it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import lmdb

from node.blobs import DetachedRefs
from node.gc import reachability
from node.gc.blobs import BlobSweeper
from node.gc.bloom import ChunkFilter
from node.gc.chunks import ChunkSurvey, ChunkSweeper
from node.gc.collector import (
    LISTED_BLOBS,
    GcConfig,
    GcReport,
    carry_out_packs,
    in_own_thread,
    report_plan,
)
from node.gc.compaction import Compactor, StepHook, _no_hook
from node.gc.pacing import Pacer, Stopped
from node.gc.plan import going_blobs, make_plan
from node.local import LocalNode
from node.recipe import Recipe

log = logging.getLogger(__name__)

MARK_BATCH = 256  # recipes read per transaction while marking: old snapshots pin pages


class MemberCollector:
    """Stamps and sweeps a member's recipes and chunks with the liveness a coordinator
    gathered from every member; each call runs in a thread of its own, one at a time."""

    def __init__(self, node: LocalNode, config: GcConfig | None = None,
                 on_step: StepHook = _no_hook) -> None:
        self._node = node
        self.config = config or GcConfig()
        self._blobs = BlobSweeper(node.index, node.chunks, DetachedRefs())
        self._chunks = ChunkSweeper(node.index, node.chunks)
        self._compactor = Compactor(node.chunks, on_step)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def wait_idle(self) -> None:
        with self._lock:
            pass

    def _locked(self, work: Callable[[Pacer], GcReport]) -> GcReport:
        with self._lock:
            if self._stop.is_set():
                raise Stopped
            started = time.monotonic()
            report = work(Pacer(self.config.duty, stop=self._stop))
            report.seconds = time.monotonic() - started
            return report

    # -- 1: mark blobs ---------------------------------------------------------------------

    async def live_blobs(self) -> tuple[list[str], int]:
        return await in_own_thread(self.live_blobs_now)

    def live_blobs_now(self) -> tuple[list[str], int]:
        """The blobs this member keeps alive, and how many chunks it stores."""
        index = self._node.index

        def run(txn: lmdb.Transaction) -> tuple[list[str], int]:
            live = sorted(reachability.live_blobs(index, txn))
            return live, int(txn.stat(index.db("chunks"))["entries"])

        return index.read(run)

    # -- 2: sweep blobs, mark chunks ---------------------------------------------------------

    async def sweep_blobs(self, live: frozenset[str], dry_run: bool, bits: int,
                          hashes: int) -> tuple[GcReport, ChunkFilter]:
        return await in_own_thread(lambda: self.sweep_blobs_now(live, dry_run, bits, hashes))

    def sweep_blobs_now(self, live: frozenset[str], dry_run: bool, bits: int, hashes: int
                        ) -> tuple[GcReport, ChunkFilter]:
        used = ChunkFilter(bits, hashes)

        def work(pacer: Pacer) -> GcReport:
            survey = (self._blobs.survey(live) if dry_run
                      else self._blobs.restamp(pacer, live))
            now = self._node.chunks.clock()
            going, waiting = going_blobs(survey, now, now - self.config.grace_ms)
            report = GcReport(dry_run, blobs_waiting=waiting)
            skip: set[str] = set()
            if dry_run:
                recipes = self._blobs.recipes([d for d, _ in going])
                report.blobs_deleted = len(going)
                report.blob_bytes = sum(r.size for r in recipes.values())
                report.blobs = [d for d, _ in going[:LISTED_BLOBS]]
                skip = {d for d, _ in going}  # the recipes a real run would delete
            else:
                deleted = self._blobs.delete(going, pacer)
                report.blobs_deleted = len(deleted)
                report.blob_bytes = sum(b.size for b in deleted)
                report.blobs = [b.digest for b in deleted[:LISTED_BLOBS]]
            self._mark(used, skip, pacer)
            return report

        report = self._locked(work)
        if not dry_run:
            log.info("cluster garbage collection: %d blobs deleted, %d waiting",
                     report.blobs_deleted, report.blobs_waiting)
        return report, used

    def _mark(self, used: ChunkFilter, skip: set[str], pacer: Pacer) -> None:
        """Add every chunk used by a recipe (not in `skip`) or an upload part here."""
        for table in ("blobs", "upload_parts"):
            for batch in self._node.index.batches(table, MARK_BATCH):
                for key, raw in batch:
                    if table != "blobs" or key.decode() not in skip:
                        used.update(Recipe.unpack(raw).ids)
                pacer.tick(len(batch))

    # -- 3: sweep chunks, compact packs ------------------------------------------------------

    async def sweep_chunks(self, used: ChunkFilter, dry_run: bool) -> GcReport:
        return await in_own_thread(lambda: self.sweep_chunks_now(used, dry_run))

    def sweep_chunks_now(self, used: ChunkFilter, dry_run: bool) -> GcReport:
        node = self._node

        def work(pacer: Pacer) -> GcReport:
            if not dry_run:
                self._compactor.reclaim()  # packs a previous run left to readers
            survey = self._survey(used, pacer)
            if not dry_run:
                in_use = sorted(c for c in survey.stamps if c in used)
                gone = sorted(c for c in survey.stamps
                              if c not in survey.zero and c not in used)
                fresh = sorted(c for c in survey.zero if c not in survey.stamps)
                self._revive(in_use, gone, fresh, pacer)
                survey.stamps = self._chunks.stamps()
            now = node.chunks.clock()
            packs = node.packs
            sizes = {n: packs.size(n) for n in packs.numbers()}
            plan = make_plan([], 0, {}, survey, {}, now, now - self.config.grace_ms, sizes,
                             node.chunks.pack_ends(), packs.current,
                             self.config.compact_below, used.__contains__)
            report = GcReport(dry_run, chunks_waiting=plan.chunks_waiting)
            if dry_run:
                report_plan(report, plan)
                return report
            cutoff = node.chunks.clock() - self.config.grace_ms
            swept = self._chunks.sweep(plan.chunks, cutoff, pacer, used.__contains__)
            report.chunks_deleted = swept.count
            report.chunk_bytes = swept.stored_bytes
            carry_out_packs(self._compactor, plan, pacer, report)
            return report

        report = self._locked(work)
        if not dry_run:
            log.info("cluster garbage collection: %d chunks (%d bytes) deleted, %d packs "
                     "compacted, %d bytes of disk back", report.chunks_deleted,
                     report.chunk_bytes, report.packs_compacted, report.disk_bytes_reclaimed)
        return report

    def _survey(self, used: ChunkFilter, pacer: Pacer) -> ChunkSurvey:
        """ChunkSweeper.survey, keeping only chunks outside `used`: on a member every
        count is zero, and an entry per stored chunk would cost ~200 MB a million."""
        survey = ChunkSurvey()
        for chunk_id, entry in self._chunks.scan(pacer):
            survey.live_bytes[entry.pack] = (survey.live_bytes.get(entry.pack, 0)
                                             + entry.stored_length)
            if entry.refs == 0 and chunk_id not in used:
                survey.zero[chunk_id] = entry
        survey.stamps = self._chunks.stamps()
        return survey

    def _revive(self, in_use: Sequence[bytes], gone: Sequence[bytes], fresh: Sequence[bytes],
                pacer: Pacer) -> None:
        if in_use:
            self._chunks.revive(in_use, pacer)
        if gone:
            self._chunks.forget(gone, pacer)
        if fresh:
            self._chunks.stamp(fresh, pacer)
