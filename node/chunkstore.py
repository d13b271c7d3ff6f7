"""Where a chunk is written and read: pack files plus the `chunks` table of the index.

The order of a write is what makes it durable: chunk bytes go to a pack and are fsynced,
and only then does one index transaction make them visible. A crash in between leaves
unreferenced bytes in a pack, never an index entry pointing at nothing.

Every read verifies the stored bytes against a 64-bit XXH3 checksum kept in the index
(see codec.checksum for why not SHA-256 here); a mismatch is recorded in the `corrupt`
table, logged, and raised as DataLoss, so wrong bytes are never returned.

Reference counts feed garbage collection: a chunk whose count reaches zero is stamped in
the `unreferenced` table with the moment it did, and the stamp goes when it is referenced
again. A chunk found present by `has` while stamped is revived (its stamp removed) in a
write transaction, so the caller, which will not send those bytes, has the whole grace
period to reference it; the sweep (node/gc/chunks.py) re-checks all this inside its own
write transaction, and LMDB runs one writer at a time.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, NoReturn

import lmdb

from node.api import Codec, PutResult, StoredChunk
from node.clock import STAMP, Clock, wall_ms
from node.codec import MAX_RAW_LENGTH, checksum, decode, decode_stored
from node.errors import DataLoss, InvalidArgument, NotFound
from node.index import Index, fetch, fetch_many
from node.packs import PackHold, Packs
from node.recipe import ChunkSlice, Recipe

log = logging.getLogger(__name__)

# pack, offset, stored length, raw length, codec, refs, checksum of the stored bytes
_ENTRY = struct.Struct(">IQIIBIQ")
# Where add_refs reads and rewrites in a packed entry: after the fields before them.
_RAW_LENGTH_AT, _REFS_AT = struct.calcsize(">IQI"), struct.calcsize(">IQIIB")
# Read as one big-endian integer, an entry's count is this many bits up: adding a multiple
# of 1 << _REFS_SHIFT adds to the count alone.
_REFS_SHIFT = 8 * (_ENTRY.size - _REFS_AT - 4)
_NO_REFS = bytes(4)
_U32 = struct.Struct(">I")
_PACK = _U32


class ChunkEntry(NamedTuple):
    """A chunk's index entry. A named tuple, not a dataclass: reads unpack one per chunk
    (~50 per MB), and building a frozen dataclass cost more than the LMDB look-up."""

    pack: int
    offset: int
    stored_length: int
    raw_length: int
    codec: Codec
    refs: int
    check: int

    def pack_bytes(self) -> bytes:
        return _ENTRY.pack(self.pack, self.offset, self.stored_length, self.raw_length,
                           int(self.codec), self.refs, self.check)

    @classmethod
    def unpack(cls, raw: bytes) -> ChunkEntry:
        return cls._make(_ENTRY.unpack(raw))

    def moved(self, pack: int, offset: int) -> ChunkEntry:
        return self._replace(pack=pack, offset=offset)

    @property
    def end(self) -> int:
        return self.offset + self.stored_length


def _follows(previous: ChunkEntry, entry: ChunkEntry) -> bool:
    return (entry.pack == previous.pack
            and entry.offset == previous.offset + previous.stored_length)


def _table_size(txn: lmdb.Transaction, db: Any) -> int:
    """Entries in a table, read from its root page: when the waiting list is empty, as it
    mostly is, looking each chunk up in it is skipped."""
    return int(txn.stat(db)["entries"])


def _refuse(recipe: Recipe, stored: dict[bytes, bytes]) -> NoReturn:
    """Why `recipe` cannot be committed: its first entry that is not stored, or whose
    length is not the stored chunk's."""
    for i, length in recipe.entries():
        raw = stored.get(i)
        if raw is None:
            raise NotFound(f"chunk {i.hex()} is not stored")
        raw_length, = _U32.unpack_from(raw, _RAW_LENGTH_AT)
        if raw_length != length:
            raise InvalidArgument(f"chunk {i.hex()} has {raw_length} bytes, not {length}")
    raise AssertionError("a recipe refused with nothing wrong in it")


class PutBatch:
    """Chunks written as one durable step: any number of `write`s, then `commit`.

    Bytes are appended to packs as they come (node/packwriter.py writes them meanwhile)
    and made durable once, in `commit`, just before the one index transaction that makes
    them visible; fsyncing every few MiB instead costs a fifth of the disk's throughput.
    """

    def __init__(self, store: ChunkStore) -> None:
        self._store = store
        self._pending: dict[bytes, ChunkEntry] = {}
        self._seen = 0
        self._stored_bytes = 0
        self._hold = PackHold()
        self._closed = False

    def write(self, chunks: Sequence[StoredChunk]) -> None:
        """Verify and append `chunks`. InvalidArgument for a chunk whose bytes do not match
        its id: nothing of this call's chunks is then written."""
        store = self._store
        for chunk in chunks:
            if len(chunk.id) != 32:
                raise InvalidArgument(f"chunk id of {len(chunk.id)} bytes, expected 32")
            if not 0 < chunk.raw_length <= MAX_RAW_LENGTH or len(chunk.data) > MAX_RAW_LENGTH:
                raise InvalidArgument(f"chunk {chunk.id.hex()} of {chunk.raw_length} bytes: "
                                      f"chunks hold 1 to {MAX_RAW_LENGTH} bytes")
        self._seen += len(chunks)
        present = store.has([c.id for c in chunks])
        fresh: dict[bytes, StoredChunk] = {}
        for chunk, known in zip(chunks, present, strict=True):
            if known or chunk.id in fresh or chunk.id in self._pending:
                continue
            if store.verify_puts:
                try:
                    decode(chunk)
                except DataLoss as exc:
                    raise InvalidArgument(f"rejected: {exc}") from None
            fresh[chunk.id] = chunk
        todo = list(fresh.values())
        locations = store.packs.append([c.data for c in todo], sync=False, hold=self._hold)
        if self._closed:  # abandoned while this write ran in its thread
            store.packs.release(self._hold)
        for chunk, (pack, offset) in zip(todo, locations, strict=True):
            self._pending[chunk.id] = ChunkEntry(pack, offset, len(chunk.data),
                                                 chunk.raw_length, chunk.codec, 0,
                                                 checksum(chunk.data))
            self._stored_bytes += len(chunk.data)

    def commit(self) -> PutResult:
        """fsync the packs, then make every written chunk visible in one transaction."""
        store = self._store
        if not self._pending:
            self.close()
            store.count_put(0, self._seen, 0)
            return PutResult(duplicate=self._seen)
        try:
            store.packs.sync()
            table = store.index.db("chunks")

            def run(txn: lmdb.Transaction) -> int:
                stored = 0
                for cid, entry in self._pending.items():
                    # A concurrent writer may have stored the same chunk meanwhile: keep its
                    # entry (and reference count), revived if it was waiting to be
                    # collected; these bytes are then just unreferenced.
                    if txn.put(cid, entry.pack_bytes(), db=table, overwrite=False):
                        stored += 1
                    else:
                        txn.delete(cid, db=store.unreferenced_db)
                store.note_ends(txn, self._pending.values())
                return stored

            stored = store.index.write(run)
        finally:
            self.close()
        store.count_put(stored, self._seen - stored, self._stored_bytes)
        self._pending.clear()
        return PutResult(stored=stored, duplicate=self._seen - stored,
                         stored_bytes=self._stored_bytes)

    def close(self) -> None:
        """Release the packs this batch wrote to: committed, or abandoned (its bytes are
        then dead, and garbage collection may cut them off)."""
        self._closed = True
        self._store.packs.release(self._hold)


class ChunkStore:
    def __init__(self, index: Index, packs: Packs, verify_puts: bool = True,
                 clock: Clock = wall_ms) -> None:
        self.verify_puts = verify_puts
        self.index = index
        self.packs = packs
        self.clock = clock
        self._chunks = index.db("chunks")
        self.unreferenced_db = index.db("unreferenced")
        self._pack_ends = index.db("pack_ends")
        self._counts_lock = threading.Lock()
        self.chunks_written = 0
        self.chunks_duplicate = 0
        self.chunks_found = 0       # asked about with `has` and already stored
        self.stored_bytes = 0

    def count_put(self, written: int, duplicate: int, stored_bytes: int) -> None:
        with self._counts_lock:
            self.chunks_written += written
            self.chunks_duplicate += duplicate
            self.stored_bytes += stored_bytes

    # -- lookups -------------------------------------------------------------------------

    def has(self, ids: Sequence[bytes]) -> list[bool]:
        """Which chunks are stored. A chunk reported present that was waiting to be
        collected is revived first: the caller will reference it rather than send it."""
        def run(txn: lmdb.Transaction) -> tuple[list[bool], list[bytes]]:
            found = {k for k, _ in fetch_many(txn, ids, self._chunks)}
            stamped = []
            if found and _table_size(txn, self.unreferenced_db):
                stamped = [k for k, _ in fetch_many(txn, found, self.unreferenced_db)]
            return [i in found for i in ids], stamped

        present, stamped = self.index.read(run)
        found = sum(present)
        with self._counts_lock:
            self.chunks_found += found
        if not stamped:
            return present

        def revive(txn: lmdb.Transaction) -> set[bytes]:
            gone = set()
            for i in stamped:
                txn.delete(i, db=self.unreferenced_db)
                if fetch(txn, i, self._chunks) is None:
                    gone.add(i)  # collected since the look-up: the caller must send it
            return gone

        gone = self.index.write(revive)
        return [p and i not in gone for i, p in zip(ids, present, strict=True)]

    def entries(self, ids: Sequence[bytes]) -> list[ChunkEntry | None]:
        def run(txn: lmdb.Transaction) -> list[ChunkEntry | None]:
            found = dict(fetch_many(txn, ids, self._chunks))
            unpack = ChunkEntry.unpack
            return [None if (raw := found.get(i)) is None else unpack(raw) for i in ids]

        return self.index.read(run)

    # -- writes --------------------------------------------------------------------------

    def put(self, chunks: Sequence[StoredChunk]) -> PutResult:
        """Verify and store `chunks`; durable and visible when this returns."""
        batch = self.begin_put()
        try:
            batch.write(chunks)
            return batch.commit()
        finally:
            batch.close()

    def begin_put(self) -> PutBatch:
        return PutBatch(self)

    def note_ends(self, txn: lmdb.Transaction, entries: Iterable[ChunkEntry]) -> None:
        """Record how far each pack's committed chunks reach, so whatever lies past that
        (a crash's or an abandoned write's bytes) can be cut off (Packs.trim)."""
        ends: dict[int, int] = {}
        for entry in entries:
            ends[entry.pack] = max(ends.get(entry.pack, 0), entry.end)
        for pack, end in ends.items():
            raw = fetch(txn, _PACK.pack(pack), self._pack_ends)
            if raw is None or STAMP.unpack(raw)[0] < end:
                txn.put(_PACK.pack(pack), STAMP.pack(end), db=self._pack_ends)

    def pack_ends(self) -> dict[int, int]:
        def run(txn: lmdb.Transaction) -> dict[int, int]:
            return {_PACK.unpack(bytes(k))[0]: STAMP.unpack(bytes(v))[0]
                    for k, v in txn.cursor(db=self._pack_ends)}

        return self.index.read(run)

    def pack_end(self, pack: int) -> int | None:
        def run(txn: lmdb.Transaction) -> int | None:
            raw = fetch(txn, _PACK.pack(pack), self._pack_ends)
            return None if raw is None else int(STAMP.unpack(raw)[0])

        return self.index.read(run)

    def forget_pack(self, txn: lmdb.Transaction, pack: int) -> None:
        txn.delete(_PACK.pack(pack), db=self._pack_ends)

    def add_refs(self, txn: lmdb.Transaction, recipe: Recipe, delta: int) -> None:
        """Adjust the reference counts of a recipe's chunks inside the caller's transaction.

        NotFound when a chunk is missing and InvalidArgument when a recipe gives a chunk a
        length it does not have (both abort the transaction), so no recipe can refer to
        nothing or make a read return other bytes than the blob's.
        """
        # Per entry this is the node's costliest step for layers of many small files (the
        # 240 MB of 17 wheels as tars are 62,000 entries), so the common case runs in C-level
        # passes: one look-up for the whole recipe, the check as one comparison of bytes
        # (each found id followed by its stored length is the packed recipe itself), and
        # the count raised by adding to each entry read as one big integer.
        ids = recipe.ids
        found = fetch_many(txn, ids, self._chunks)  # in order, repeats included
        if len(found) != len(ids) or b"".join(
                [k + v[_RAW_LENGTH_AT:_RAW_LENGTH_AT + 4] for k, v in found]) != recipe.pack():
            _refuse(recipe, dict(found))
        entries = dict(found)
        if delta > 0 and len(entries) == len(ids):
            step = delta << _REFS_SHIFT
            # Only the first reference can take a chunk off the waiting list.
            referenced_again = [k for k, v in found if v[_REFS_AT:_REFS_AT + 4] == _NO_REFS]
            txn.cursor(db=self._chunks).putmulti(
                [(k, (int.from_bytes(v, "big") + step).to_bytes(_ENTRY.size, "big"))
                 for k, v in found])
        else:
            referenced_again = self._recount(txn, ids, entries, delta)
        if referenced_again and _table_size(txn, self.unreferenced_db):
            # Most were never unreferenced (stored a moment ago): look before deleting.
            for i, _ in fetch_many(txn, referenced_again, self.unreferenced_db):
                txn.delete(i, db=self.unreferenced_db)

    def _recount(self, txn: lmdb.Transaction, ids: list[bytes], entries: dict[bytes, bytes],
                 delta: int) -> list[bytes]:
        """add_refs for the other cases (references dropped, a chunk repeated in one
        recipe): counts floored at zero, chunks that reach it stamped for collection.
        The chunks whose count left zero."""
        counts = Counter(ids)
        updated: list[tuple[bytes, bytes]] = []
        referenced_again: list[bytes] = []
        for i, raw in entries.items():
            was, = _U32.unpack_from(raw, _REFS_AT)
            refs = max(0, was + counts[i] * delta)
            updated.append((i, raw[:_REFS_AT] + _U32.pack(refs) + raw[_REFS_AT + 4:]))
            if refs == 0 and was > 0:
                txn.put(i, STAMP.pack(self.clock()), db=self.unreferenced_db)
            elif refs > 0 and was == 0:
                referenced_again.append(i)
        txn.cursor(db=self._chunks).putmulti(updated)
        return referenced_again

    # -- reads ---------------------------------------------------------------------------

    def get(self, ids: Sequence[bytes]) -> list[StoredChunk]:
        """The chunks as stored, each verified. NotFound or DataLoss for the first bad one."""
        with self.packs.reading():
            return self._get(ids)

    def _get(self, ids: Sequence[bytes]) -> list[StoredChunk]:
        entries = self.entries(ids)
        out = []
        for cid, entry in zip(ids, entries, strict=True):
            if entry is None:
                raise NotFound(f"chunk {cid.hex()} is not stored")
            chunk = self._load(cid, entry)
            self._check_stored(chunk, entry)
            out.append(chunk)
        return out

    def drop(self, ids: Sequence[bytes]) -> int:
        """Forget copies that now live elsewhere (a cluster stand-in handing its copies
        back to their owners); their bytes become dead space that compaction reclaims.
        Chunks a local recipe refers to are kept. How many were dropped."""
        def run(txn: lmdb.Transaction) -> int:
            dropped = 0
            for cid in ids:
                raw = fetch(txn, cid, self._chunks)
                if raw is None or ChunkEntry.unpack(raw).refs > 0:
                    continue
                txn.delete(cid, db=self._chunks)
                txn.delete(cid, db=self.unreferenced_db)
                dropped += 1
            return dropped

        return self.index.write(run)

    def get_available(self, ids: Sequence[bytes]) -> list[StoredChunk]:
        """The chunks of `ids` this node can serve, verified, in order; the ones it lacks
        or finds corrupt (reported as such) are left out. For a cluster reader, who asks
        another member for what is missing."""
        out = []
        for cid, entry in zip(ids, self.entries(ids), strict=True):
            if entry is None:
                continue
            try:
                chunk = self._load(cid, entry)
                self._check_stored(chunk, entry)
            except (DataLoss, OSError):
                continue
            out.append(chunk)
        return out

    def read_raw(self, ids: Sequence[bytes]) -> list[bytes | memoryview]:
        """The decoded bytes of each chunk, verified. Chunks that sit back to back in a
        pack (a blob written in order) are read with one pread."""
        with self.packs.reading():
            return self._read_raw(ids)

    def _read_raw(self, ids: Sequence[bytes]) -> list[bytes | memoryview]:
        entries = self.entries(ids)
        out: list[bytes | memoryview] = []
        run: list[tuple[bytes, ChunkEntry]] = []
        for cid, entry in zip(ids, entries, strict=True):
            if entry is None:
                raise NotFound(f"chunk {cid.hex()} is not stored")
            if run and not _follows(run[-1][1], entry):
                out.extend(self._read_run(run))
                run = []
            run.append((cid, entry))
        if run:
            out.extend(self._read_run(run))
        return out

    def read_slices(self, group: Sequence[ChunkSlice]) -> bytes | memoryview:
        """The bytes of `group`'s slices, in order, verified. When they are raw chunks lying
        back to back in one pack (a blob written in order, stored as it came), the answer
        is a view of a single pread: no copy of its own."""
        with self.packs.reading():
            return self._read_slices(group)

    def _read_slices(self, group: Sequence[ChunkSlice]) -> bytes | memoryview:
        ids = [s.chunk_id for s in group]
        entries = self.entries(ids)
        run: list[tuple[bytes, ChunkEntry]] = []
        for cid, entry in zip(ids, entries, strict=True):
            if entry is None:
                raise NotFound(f"chunk {cid.hex()} is not stored")
            if entry.codec != Codec.RAW or (run and not _follows(run[-1][1], entry)):
                break
            run.append((cid, entry))
        else:
            span = self._read_span(run)
            for cid, entry in run:
                start = entry.offset - run[0][1].offset
                self._check_stored(StoredChunk(cid, entry.codec, entry.raw_length,
                                               span[start:start + entry.stored_length]), entry)
            start, end = group[0].start, len(span) - (group[-1].length - group[-1].end)
            if start == 0 and end == len(span) and isinstance(span.obj, bytes):
                return span.obj  # whole chunks: the pread buffer itself, as bytes
            return span[start:end]
        raws = self._read_raw(ids)
        return b"".join(
            raw if (s.start == 0 and s.end == len(raw)) else raw[s.start:s.end]
            for s, raw in zip(group, raws, strict=True))

    def _read_span(self, run: list[tuple[bytes, ChunkEntry]]) -> memoryview:
        first = run[0][1]
        last = run[-1][1]
        try:
            return memoryview(self.packs.read(first.pack, first.offset,
                                               last.offset + last.stored_length - first.offset))
        except OSError as exc:
            for cid, entry in run:
                self.report_corrupt(cid, entry, f"pack unreadable: {exc}")
            raise DataLoss(f"pack {first.pack} is unreadable: {exc}") from None

    def _read_run(self, run: list[tuple[bytes, ChunkEntry]]) -> list[bytes | memoryview]:
        first = run[0][1]
        span = self._read_span(run)
        out = []
        for cid, entry in run:
            start = entry.offset - first.offset
            data = span[start:start + entry.stored_length]
            out.append(self._verify(StoredChunk(cid, entry.codec, entry.raw_length, data),
                                    entry))
        return out

    def _load(self, cid: bytes, entry: ChunkEntry) -> StoredChunk:
        try:
            data = self.packs.read(entry.pack, entry.offset, entry.stored_length)
        except OSError as exc:
            self.report_corrupt(cid, entry, f"pack unreadable: {exc}")
            raise DataLoss(f"pack {entry.pack} is unreadable: {exc}") from None
        return StoredChunk(cid, entry.codec, entry.raw_length, data)

    def _check_stored(self, chunk: StoredChunk, entry: ChunkEntry) -> None:
        """The stored bytes are the ones written: same length, same checksum."""
        why = None
        if len(chunk.data) != entry.stored_length:
            why = "truncated in its pack"
        elif checksum(chunk.data) != entry.check:
            why = "does not match the checksum of its stored bytes"
        if why is not None:
            self.report_corrupt(chunk.id, entry, why)
            raise DataLoss(f"chunk {chunk.id.hex()} {why}")

    def _verify(self, chunk: StoredChunk, entry: ChunkEntry) -> bytes | memoryview:
        """The raw bytes of a stored chunk, checked (see `checksum`)."""
        self._check_stored(chunk, entry)
        try:
            return decode_stored(chunk)
        except DataLoss as exc:
            self.report_corrupt(chunk.id, entry, str(exc))
            raise

    # -- scrub and repair ------------------------------------------------------------------

    def ids_after(self, after: bytes, limit: int) -> list[bytes]:
        """Up to `limit` stored chunk ids greater than `after`, in order: a scan in steps
        that never holds a read transaction for long."""
        batch = next(self.index.batches("chunks", limit, after), [])
        return [k for k, _ in batch]

    def scrub(self, ids: Sequence[bytes]) -> tuple[list[bytes], int]:
        """Re-read `ids` and re-hash them with SHA-256, not just the checksum reads use;
        the corrupt ones (reported in the `corrupt` table) and the bytes read."""
        bad = []
        read = 0
        for cid, entry in zip(ids, self.entries(ids), strict=True):
            if entry is None:
                continue  # collected meanwhile
            try:
                chunk = self._load(cid, entry)
                read += len(chunk.data)
                self._check_stored(chunk, entry)
                decode(chunk)
            except DataLoss as exc:
                self.report_corrupt(cid, entry, str(exc))
                bad.append(cid)
        return bad, read

    def replace(self, chunks: Sequence[StoredChunk]) -> None:
        """Store good copies of chunks found corrupt here (from another member): written
        and fsynced, then the index points at them, keeping their references. DataLoss,
        and nothing replaced, when a copy is no better."""
        for chunk in chunks:
            decode(chunk)
        hold = PackHold()
        try:
            locations = self.packs.append([c.data for c in chunks], sync=True, hold=hold)

            def run(txn: lmdb.Transaction) -> None:
                written = []
                for chunk, (pack, offset) in zip(chunks, locations, strict=True):
                    old = fetch(txn, chunk.id, self._chunks)
                    refs = ChunkEntry.unpack(old).refs if old is not None else 0
                    entry = ChunkEntry(pack, offset, len(chunk.data), chunk.raw_length,
                                       chunk.codec, refs, checksum(chunk.data))
                    txn.put(chunk.id, entry.pack_bytes(), db=self._chunks)
                    txn.delete(chunk.id, db=self.index.db("corrupt"))
                    written.append(entry)
                self.note_ends(txn, written)

            self.index.write(run)
        finally:
            self.packs.release(hold)
        log.info("%d corrupt chunks replaced by copies from other members", len(chunks))

    def report_corrupt(self, cid: bytes, entry: ChunkEntry, why: str) -> None:
        log.error("corrupt chunk %s in pack %d at %d: %s", cid.hex(), entry.pack,
                  entry.offset, why)
        record = json.dumps({"pack": entry.pack, "offset": entry.offset, "why": why,
                             "at": time.time()}).encode()
        self.index.write(lambda txn: txn.put(cid, record, db=self.index.db("corrupt")))

    def corrupt_chunks(self) -> dict[str, dict[str, object]]:
        def run(txn: lmdb.Transaction) -> dict[str, dict[str, object]]:
            cursor = txn.cursor(db=self.index.db("corrupt"))
            return {bytes(k).hex(): json.loads(bytes(v)) for k, v in cursor}

        return self.index.read(run)
