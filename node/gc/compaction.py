"""Pack compaction: the live chunks of a mostly dead pack are copied to the current pack,
the index is pointed at the copies, and the old pack is deleted once no read can still be
using it.

Order, for kill -9 at any point: copies are appended and fsynced before the one
transaction per batch that moves their index entries, so the index always points at
intact bytes, old or new; the old pack is retired only when nothing points into it, and a
pack left behind by a crash (nothing live) or copies never indexed (dead bytes past the
recorded end of the current pack) are removed by the next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import lmdb

from node.chunkstore import ChunkEntry, ChunkStore
from node.codec import checksum
from node.gc.chunks import ChunkSweeper
from node.gc.pacing import Pacer
from node.index import fetch

log = logging.getLogger(__name__)

COPY_BATCH = 4 << 20   # chunk bytes copied per fsync and index transaction
RECLAIM_WAIT = 30.0    # seconds to wait for reads of retired packs before leaving them
                       # to the next run

# Called at each durable step with its name and the pack: the points where a crash
# test kills the process, and a trace for debugging.
StepHook = Callable[[str, int], None]


def _no_hook(step: str, pack: int) -> None:
    pass


@dataclass(slots=True)
class Compaction:
    compacted: list[int] = field(default_factory=list)  # packs retired
    deleted: list[int] = field(default_factory=list)    # pack files removed
    moved_bytes: int = 0
    freed_bytes: int = 0   # size of the pack files removed
    trimmed_bytes: int = 0
    skipped: list[int] = field(default_factory=list)   # busy, or holding unreadable chunks


class Compactor:
    def __init__(self, store: ChunkStore, on_step: StepHook = _no_hook) -> None:
        self._store = store
        self._packs = store.packs
        self._index = store.index
        self._chunks = store.index.db("chunks")
        self._sweeper = ChunkSweeper(store.index, store)
        self._on_step = on_step

    def trim(self, numbers: Sequence[int], result: Compaction) -> None:
        """Cut dead bytes off the end of packs (a crash's, or an abandoned write's)."""
        for number in numbers:
            result.trimmed_bytes += self._packs.trim(number, self._store.pack_end)

    def compact(self, numbers: Sequence[int], pacer: Pacer, result: Compaction) -> None:
        targets = []
        for number in numbers:
            if number == self._packs.current and not self._packs.seal_current():
                result.skipped.append(number)  # a write into it is in flight
                continue
            if not self._packs.settled(number):
                result.skipped.append(number)
                continue
            targets.append(number)
        if not targets:
            return
        # Settled: every entry that will ever point into these packs is committed, so one
        # scan from here on finds them all.
        by_pack: dict[int, list[tuple[bytes, ChunkEntry]]] = {n: [] for n in targets}
        for chunk_id, entry in self._sweeper.scan(pacer):
            if entry.pack in by_pack:
                by_pack[entry.pack].append((chunk_id, entry))
        sizes: dict[int, int] = {}
        for number in targets:
            live = sorted(by_pack[number], key=lambda item: item[1].offset)
            sizes[number] = self._packs.size(number)
            if not self._move_all(number, live, pacer, result):
                result.skipped.append(number)
                continue
            self._forget(number)
            self._packs.retire(number)
            self._on_step("retired", number)
            result.compacted.append(number)
        for number in self.reclaim():
            result.deleted.append(number)
            result.freed_bytes += sizes.get(number, 0)

    def _forget(self, number: int) -> None:
        def run(txn: lmdb.Transaction) -> None:
            self._store.forget_pack(txn, number)

        self._index.write(run)

    def reclaim(self) -> list[int]:
        """Delete retired packs as the reads that may use them finish."""
        deleted = self._packs.reclaim()
        deadline = time.monotonic() + RECLAIM_WAIT
        while self._packs.retired() and time.monotonic() < deadline:
            time.sleep(0.005)
            deleted += self._packs.reclaim()
        for number in deleted:
            self._on_step("deleted", number)
        return deleted

    def _move_all(self, number: int, live: list[tuple[bytes, ChunkEntry]], pacer: Pacer,
                  result: Compaction) -> bool:
        """Copy and re-point every live chunk of pack `number`; False if one could not be
        (unreadable bytes stay where they are, recorded as corrupt)."""
        complete = True
        batch: list[tuple[bytes, ChunkEntry]] = []
        size = 0
        for item in live:
            batch.append(item)
            size += item[1].stored_length
            if size >= COPY_BATCH:
                complete &= self._move(number, batch, result)
                batch, size = [], 0
                pacer.rest()
        if batch:
            complete &= self._move(number, batch, result)
        return complete

    def _read(self, number: int, batch: list[tuple[bytes, ChunkEntry]]
              ) -> list[tuple[bytes, ChunkEntry, bytes]]:
        """The stored bytes of each chunk; chunks back to back are read with one pread
        (dead bytes between live ones are never read)."""
        out: list[tuple[bytes, ChunkEntry, bytes]] = []
        run: list[tuple[bytes, ChunkEntry]] = []

        def flush() -> None:
            if not run:
                return
            first = run[0][1]
            try:
                span = self._packs.read(number, first.offset, run[-1][1].end - first.offset)
            except OSError:
                span = b""
            for chunk_id, entry in run:
                start = entry.offset - first.offset
                out.append((chunk_id, entry, span[start:start + entry.stored_length]))
            run.clear()

        for item in batch:
            if run and item[1].offset != run[-1][1].end:
                flush()
            run.append(item)
        flush()
        return out

    def _move(self, number: int, batch: list[tuple[bytes, ChunkEntry]],
              result: Compaction) -> bool:
        good: list[tuple[bytes, ChunkEntry, bytes]] = []
        for chunk_id, entry, data in self._read(number, batch):
            if len(data) != entry.stored_length or checksum(data) != entry.check:
                # Copying would only spread bad bytes; they stay, and so does the pack.
                self._store.report_corrupt(chunk_id, entry, "failed its checksum while "
                                           "being compacted")
                continue
            good.append((chunk_id, entry, data))
        if not good:
            return len(good) == len(batch)
        locations = self._packs.append([data for _, _, data in good], sync=False)
        self._on_step("copied", number)
        self._packs.sync()
        self._on_step("synced", number)

        def run(txn: lmdb.Transaction) -> int:
            moved_entries = []
            for (chunk_id, old, _), (pack, offset) in zip(good, locations, strict=True):
                raw = fetch(txn, chunk_id, self._chunks)
                if raw is None:
                    continue  # collected meanwhile: the copy is dead bytes
                now = ChunkEntry.unpack(raw)
                if (now.pack, now.offset) != (old.pack, old.offset):
                    continue
                moved = now.moved(pack, offset)
                txn.put(chunk_id, moved.pack_bytes(), db=self._chunks)
                moved_entries.append(moved)
            self._store.note_ends(txn, moved_entries)
            return sum(e.stored_length for e in moved_entries)

        result.moved_bytes += self._index.write(run)
        self._on_step("moved", number)
        return len(good) == len(batch)
