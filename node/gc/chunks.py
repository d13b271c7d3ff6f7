"""Chunk collection: chunks whose reference count has been zero for longer than the grace
period leave the index; their bytes stay in their pack until it is compacted.

`sweep` takes the liveness test as an argument: on one node the reference counts are the
whole truth (`no_other_holder`), while a cluster will pass membership in the union of
every node's live set (recipes on other nodes refer to chunks here), mark and sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import lmdb

from node.chunkstore import ChunkEntry, ChunkStore
from node.clock import STAMP
from node.gc.pacing import Pacer
from node.index import Index, fetch

BATCH = 256       # chunks per write transaction
SCAN_BATCH = 1024  # entries per read transaction while scanning: old snapshots pin pages

LiveCheck = Callable[[bytes], bool]


def no_other_holder(chunk_id: bytes) -> bool:
    """Single node: nothing outside this node's reference counts keeps a chunk alive."""
    return False


@dataclass(slots=True)
class ChunkSurvey:
    """What one scan of the chunk table found."""

    live_bytes: dict[int, int] = field(default_factory=dict)  # pack -> stored bytes indexed
    zero: dict[bytes, ChunkEntry] = field(default_factory=dict)  # chunks with no reference
    stamps: dict[bytes, int] = field(default_factory=dict)  # chunk -> unreferenced since


@dataclass(frozen=True, slots=True)
class SweptChunks:
    count: int
    stored_bytes: int


class ChunkSweeper:
    def __init__(self, index: Index, chunks: ChunkStore) -> None:
        self._index = index
        self._store = chunks
        self._chunks = index.db("chunks")
        self._stamps = chunks.unreferenced_db

    def survey(self, pacer: Pacer) -> ChunkSurvey:
        survey = ChunkSurvey()
        for chunk_id, entry in self.scan(pacer):
            survey.live_bytes[entry.pack] = (survey.live_bytes.get(entry.pack, 0)
                                             + entry.stored_length)
            if entry.refs == 0:
                survey.zero[chunk_id] = entry

        survey.stamps = self.stamps()
        return survey

    def stamps(self) -> dict[bytes, int]:
        def run(txn: lmdb.Transaction) -> dict[bytes, int]:
            return {bytes(k): STAMP.unpack(bytes(v))[0]
                    for k, v in txn.cursor(db=self._stamps)}

        return self._index.read(run)

    def scan(self, pacer: Pacer) -> Iterator[tuple[bytes, ChunkEntry]]:
        """Every chunk entry, read a batch per transaction (key order; entries added
        meanwhile may or may not be seen)."""
        for batch in self._index.batches("chunks", SCAN_BATCH):
            yield from ((k, ChunkEntry.unpack(v)) for k, v in batch)
            pacer.tick(len(batch))

    def stamp(self, ids: Sequence[bytes], pacer: Pacer) -> None:
        """Stamp chunks stored with no reference and no stamp (put and never referenced,
        or written before stamps existed) as unreferenced from now."""
        for start in range(0, len(ids), BATCH):
            group = ids[start:start + BATCH]

            def run(txn: lmdb.Transaction, group: Sequence[bytes] = group) -> None:
                now = STAMP.pack(self._store.clock())
                for chunk_id in group:
                    raw = fetch(txn, chunk_id, self._chunks)
                    if raw is not None and ChunkEntry.unpack(raw).refs == 0:
                        txn.put(chunk_id, now, db=self._stamps, overwrite=False)

            self._index.write(run)
            pacer.rest()

    def forget(self, ids: Sequence[bytes], pacer: Pacer) -> None:
        """Drop stamps of chunks that are gone or referenced (left by a crash between
        writes of older versions); always safe."""
        for start in range(0, len(ids), BATCH):
            group = ids[start:start + BATCH]

            def run(txn: lmdb.Transaction, group: Sequence[bytes] = group) -> None:
                for chunk_id in group:
                    raw = fetch(txn, chunk_id, self._chunks)
                    if raw is None or ChunkEntry.unpack(raw).refs > 0:
                        txn.delete(chunk_id, db=self._stamps)

            self._index.write(run)
            pacer.rest()

    def revive(self, ids: Sequence[bytes], pacer: Pacer) -> None:
        """Drop the stamps of `ids` whatever their counts: a cluster found them in use by
        a recipe or an upload on some member."""
        for start in range(0, len(ids), BATCH):
            group = ids[start:start + BATCH]

            def run(txn: lmdb.Transaction, group: Sequence[bytes] = group) -> None:
                for chunk_id in group:
                    txn.delete(chunk_id, db=self._stamps)

            self._index.write(run)
            pacer.rest()

    def sweep(self, ids: Sequence[bytes], cutoff_ms: int, pacer: Pacer,
              is_live: LiveCheck = no_other_holder) -> SweptChunks:
        """Remove each of `ids` from the index if, inside the removing transaction, it is
        still unreferenced, stamped no later than `cutoff_ms`, and not `is_live`. A chunk
        revived meanwhile (a put found it, a recipe took it) has lost its stamp or gained
        a reference, and stays."""
        count = stored = 0
        for start in range(0, len(ids), BATCH):
            group = ids[start:start + BATCH]

            def run(txn: lmdb.Transaction, group: Sequence[bytes] = group) -> tuple[int, int]:
                n = size = 0
                for chunk_id in group:
                    raw = fetch(txn, chunk_id, self._chunks)
                    stamp = fetch(txn, chunk_id, self._stamps)
                    if raw is None or stamp is None or STAMP.unpack(stamp)[0] > cutoff_ms:
                        continue
                    entry = ChunkEntry.unpack(raw)
                    if entry.refs > 0 or is_live(chunk_id):
                        continue
                    txn.delete(chunk_id, db=self._chunks)
                    txn.delete(chunk_id, db=self._stamps)
                    n += 1
                    size += entry.stored_length
                return n, size

            n, size = self._index.write(run)
            count += n
            stored += size
            pacer.rest()
        return SweptChunks(count, stored)

    def entries(self, ids: Sequence[bytes]) -> dict[bytes, ChunkEntry]:
        found = self._store.entries(ids)
        return {i: e for i, e in zip(ids, found, strict=True) if e is not None}
