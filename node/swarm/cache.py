"""An edge's chunk cache: verified chunks in segment files, a size limit, and eviction of
the least recently used segments that no pull in progress needs.

Why not the node's chunk store: its packs are append-only and reclaimed by compaction
(garbage collection, to come), while a cache must drop bytes the moment it is full. Here
each fetched run of chunks (a few MiB) is one file, so eviction is an unlink. The index
lives in memory and each segment ends with its own part of it (a trailer: the chunks' ids,
offsets, lengths, codecs and checksums, and which entries of which blob's recipe they
landed as), so a restarted edge reads its cache back from the segments alone and is a
holder again from its first announce; a segment torn by a crash has no whole trailer and
is removed.

Chunks are kept as they travelled (zstd or raw), so serving a peer costs no re-encoding.
Every read checks the XXH3 checksum taken when the chunk was written (node/codec.py says
why not SHA-256; chunks were SHA-256 verified before they were written). All disk work
runs in worker threads; the index is only touched on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import struct
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from node.api import Codec, StoredChunk
from node.codec import checksum
from node.errors import NotFound
from node.folderlock import lock_folder, release
from node.swarm.holders import MAX_CHUNK_COUNT, Holding

LANDING_WAIT = 10.0         # a peer asked for chunks still arriving here waits this long
RUN_BYTES = 1 << 20         # most chunk bytes read for a peer at once (one gRPC message)

# A segment's trailer: an entry per chunk; the digest of the blob they landed for (UTF-8,
# may be empty); then the entry count, the digest's length, the blob's chunk count and the
# recipe index of the first chunk, and a magic.
_TRAILER_ENTRY = struct.Struct("<32sQIIBQ")    # id, offset, stored, raw length, codec, check
_TRAILER_END = struct.Struct("<IHQQ8s")
_MAGIC = b"shoalseg"
_SEGMENT_NAME = re.compile(r"seg-(\d{8,})")
_CODECS = frozenset(c.value for c in Codec)


@dataclass(frozen=True, slots=True)
class _Entry:
    segment: int
    offset: int
    stored_length: int
    raw_length: int
    codec: Codec
    check: int


@dataclass(slots=True)
class _Segment:
    number: int
    path: Path
    size: int = 0
    writing: bool = True
    ids: list[bytes] = field(default_factory=list)
    # (digest, chunk count) -> chunk indexes of that blob held here, as a bitset
    marks: dict[tuple[str, int], int] = field(default_factory=dict)


class ChunkCache:
    def __init__(self, folder: Path, limit: int,
                 on_drop: Callable[[list[Holding]], None] | None = None) -> None:
        self.folder = folder
        self.limit = limit
        self.size = 0
        self.evicted_bytes = 0
        self._on_drop = on_drop
        self._entries: dict[bytes, _Entry] = {}
        self._segments: OrderedDict[int, _Segment] = OrderedDict()  # least recent first
        self._next = 0
        self._pins: Counter[bytes] = Counter()
        self._landing: dict[bytes, asyncio.Future[bool]] = {}
        # (digest, chunk count) -> chunk indexes held, for a full announce
        self.holdings: dict[tuple[str, int], int] = {}
        self._lock: int | None = None

    async def open(self) -> None:
        """Take back the segments an earlier run left, least recently written first, and
        fit the limit (it may have shrunk since). The folder is locked until `close`: two
        edges on one folder would write over each other's segments. Again once open: a
        no-op."""
        if self._lock is not None:
            return
        self._lock = await asyncio.to_thread(lock_folder, self.folder, "edge")
        loaded = await asyncio.to_thread(_load, self.folder)
        for number, path, found, _ in loaded:
            segment = _Segment(number, path, writing=False)
            for cid, entry in found:
                self._entries[cid] = entry
                segment.ids.append(cid)
                segment.size += entry.stored_length
            self._segments[number] = segment
            self.size += segment.size
            self._next = number + 1
        for number, _, found, blob in loaded:
            if blob is not None:
                # Marked where each chunk's entry now is, as `mark` does: a chunk written
                # again later belongs to the later segment.
                digest, count, first = blob
                self.mark(digest, count, first, [
                    cid if self._entries[cid].segment == number else b""
                    for cid, _ in found])
        await self.evict()

    def close(self) -> None:
        if self._lock is not None:
            release(self._lock)
            self._lock = None

    # -- what is here --------------------------------------------------------------------

    def has(self, ids: Sequence[bytes]) -> list[bool]:
        return [i in self._entries for i in ids]

    def pin(self, ids: Sequence[bytes]) -> None:
        """Keep these chunks from eviction until `unpin`: a pull in progress needs them."""
        self._pins.update(ids)

    def unpin(self, ids: Sequence[bytes]) -> None:
        self._pins.subtract(ids)
        for i in ids:
            if self._pins[i] <= 0:
                del self._pins[i]

    def mark(self, digest: str, chunk_count: int, first_index: int, ids: Sequence[bytes]
             ) -> int:
        """Record that recipe entries first_index... of `digest` are the chunks `ids`, held
        here; returns the bitset of those actually present (for an announce)."""
        key = (digest, chunk_count)
        gained = 0
        for offset, cid in enumerate(ids):
            entry = self._entries.get(cid)
            if entry is None:
                continue
            bit = 1 << (first_index + offset)
            segment = self._segments[entry.segment]
            segment.marks[key] = segment.marks.get(key, 0) | bit
            gained |= bit
        if gained:
            self.holdings[key] = self.holdings.get(key, 0) | gained
        return gained

    # -- landing chunks ------------------------------------------------------------------

    def expect(self, ids: Sequence[bytes]) -> None:
        """Chunks about to arrive: a peer asking for them meanwhile waits for them."""
        loop = asyncio.get_running_loop()
        for i in ids:
            if i not in self._entries and i not in self._landing:
                self._landing[i] = loop.create_future()

    def settle(self, ids: Sequence[bytes]) -> None:
        """Release waiters of `ids`: they find the chunks stored, or not."""
        for i in ids:
            future = self._landing.pop(i, None)
            if future is not None and not future.done():
                future.set_result(i in self._entries)

    async def write(self, chunks: Sequence[StoredChunk],
                    verify: Callable[[Sequence[StoredChunk]], None] | None = None,
                    blob: tuple[str, int, int] | None = None) -> None:
        """Store chunks as one new segment; visible (and landed) on return. `verify`, when
        given, checks them first in the same worker thread (one hop off the event loop
        per message, not two); when it raises, nothing of them is stored. `blob` (digest,
        chunk count, recipe index of the first chunk) is kept in the segment's trailer, so
        that the marks `mark` will make for it come back after a restart."""
        number = self._next
        self._next += 1
        segment = _Segment(number, self.folder / f"seg-{number:08d}")
        self._segments[number] = segment

        def run() -> list[tuple[int, int]]:
            if verify is not None:
                verify(chunks)
            spots = []
            with segment.path.open("wb") as f:
                offset = 0
                for c in chunks:
                    f.write(c.data)
                    spots.append((offset, checksum(c.data)))
                    offset += len(c.data)
                f.write(b"".join(
                    _TRAILER_ENTRY.pack(c.id, at, len(c.data), c.raw_length, c.codec, check)
                    for c, (at, check) in zip(chunks, spots, strict=True)))
                digest, count, first = blob if blob is not None else ("", 0, 0)
                name = digest.encode()
                f.write(name)
                f.write(_TRAILER_END.pack(len(chunks), len(name), count, first, _MAGIC))
            return spots

        try:
            spots = await asyncio.to_thread(run)
        except BaseException:
            self._segments.pop(number, None)
            await asyncio.to_thread(segment.path.unlink, True)
            raise
        for c, (offset, check) in zip(chunks, spots, strict=True):
            self._entries[c.id] = _Entry(number, offset, len(c.data), c.raw_length, c.codec,
                                         check)
            segment.ids.append(c.id)
            segment.size += len(c.data)
        segment.writing = False
        self.size += segment.size
        self.settle([c.id for c in chunks])
        await self.evict()

    # -- reads ---------------------------------------------------------------------------

    async def read(self, ids: Sequence[bytes]) -> list[StoredChunk]:
        """The chunks as stored, checked; NotFound for the first one not here (evicted,
        or dropped because its bytes changed on disk)."""
        entries = []
        for i in ids:
            entry = self._entries.get(i)
            if entry is None:
                raise NotFound(f"chunk {i.hex()} is not cached")
            entries.append(entry)
            if entry.segment in self._segments:
                self._segments.move_to_end(entry.segment)
        paths = {e.segment: self._segments[e.segment].path for e in entries
                 if e.segment in self._segments}

        def run() -> list[StoredChunk | int]:
            # Chunks of one segment are read with one open and one pread per run of
            # neighbours (a piece landed in order lies in a few segments, back to back).
            out: list[StoredChunk | int] = []
            at = 0
            while at < len(entries):
                number = entries[at].segment
                stop = at + 1
                while (stop < len(entries) and entries[stop].segment == number
                       and entries[stop].offset == entries[stop - 1].offset
                       + entries[stop - 1].stored_length):
                    stop += 1
                out.extend(_read_run(paths.get(number), ids[at:stop], entries[at:stop]))
                at = stop
            return out

        found = await asyncio.to_thread(run)
        bad = {s for s in found if isinstance(s, int)}
        if bad:
            await _unlink([self._drop(n) for n in bad if n in self._segments])
            raise NotFound("cached chunks were evicted or damaged")
        return [c for c in found if isinstance(c, StoredChunk)]

    async def chunk_runs(self, ids: Sequence[bytes]) -> AsyncIterator[list[StoredChunk]]:
        """For peers: chunks in order, in runs of what is here, each yielded as soon as it
        is (a piece still landing is relayed as it lands, not once it is whole); a chunk
        still landing is waited for a while. NotFound at the first chunk neither here nor
        landing in time."""
        at = 0
        while at < len(ids):
            cid = ids[at]
            if cid not in self._entries:
                future = self._landing.get(cid)
                if future is not None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(asyncio.shield(future), LANDING_WAIT)
                if cid not in self._entries:
                    raise NotFound(f"chunk {cid.hex()} is not cached")
            stop, size = at, 0
            while stop < len(ids) and size < RUN_BYTES:
                entry = self._entries.get(ids[stop])
                if entry is None:
                    break
                size += entry.stored_length
                stop += 1
            yield await self.read(ids[at:stop])
            at = stop

    # -- eviction ------------------------------------------------------------------------

    async def evict(self) -> None:
        """Drop least recently used segments none of whose chunks is pinned, until the
        cache fits its limit (pinned chunks may hold it over for a while)."""
        if self.size <= self.limit:
            return
        doomed: list[Path] = []
        for number in list(self._segments):
            if self.size <= self.limit:
                break
            segment = self._segments[number]
            if segment.writing or any(i in self._pins for i in segment.ids):
                continue
            self.evicted_bytes += segment.size
            doomed.append(self._drop(number))
        if doomed:
            await _unlink(doomed)

    def _drop(self, number: int) -> Path:
        segment = self._segments.pop(number)
        self.size -= segment.size
        for i in segment.ids:
            entry = self._entries.get(i)
            if entry is not None and entry.segment == number:
                del self._entries[i]
        dropped = []
        for (digest, count), bits in segment.marks.items():
            held = self.holdings.get((digest, count), 0) & ~bits
            if held:
                self.holdings[(digest, count)] = held
            else:
                self.holdings.pop((digest, count), None)
            dropped.append(Holding(digest, count, dropped=bits))
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)
        return segment.path


_Blob = tuple[str, int, int]                   # digest, chunk count, first recipe index
_Loaded = tuple[int, Path, list[tuple[bytes, _Entry]], _Blob | None]


def _load(folder: Path) -> list[_Loaded]:
    """The segments in `folder` whose trailer is whole, by number; the others removed."""
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for path in folder.iterdir():
        match = _SEGMENT_NAME.fullmatch(path.name)
        if match is None:
            continue
        number = int(match.group(1))
        trailer = _read_trailer(path, number)
        if trailer is None:
            path.unlink(missing_ok=True)
        else:
            found.append((number, path, *trailer))
    found.sort(key=lambda f: f[0])
    return found


def _read_trailer(path: Path, number: int
                  ) -> tuple[list[tuple[bytes, _Entry]], _Blob | None] | None:
    """A segment's index and blob from its trailer, or None when the file is torn or not
    a segment."""
    with path.open("rb") as f:
        size = f.seek(0, os.SEEK_END)
        if size < _TRAILER_END.size:
            return None
        f.seek(size - _TRAILER_END.size)
        count, named, chunk_count, first, magic = _TRAILER_END.unpack(
            f.read(_TRAILER_END.size))
        start = size - _TRAILER_END.size - named - count * _TRAILER_ENTRY.size
        if magic != _MAGIC or start < 0:
            return None
        f.seek(start)
        table = f.read(count * _TRAILER_ENTRY.size)
        name = f.read(named)
    entries = []
    for cid, offset, stored, raw, codec, check in _TRAILER_ENTRY.iter_unpack(table):
        if offset + stored > start or codec not in _CODECS:
            return None
        entries.append((cid, _Entry(number, offset, stored, raw, Codec(codec), check)))
    blob = None
    if named:
        if not first + count <= chunk_count <= MAX_CHUNK_COUNT:
            return None
        try:
            blob = (name.decode(), chunk_count, first)
        except UnicodeDecodeError:
            return None
    return entries, blob


async def _unlink(paths: list[Path]) -> None:
    def run() -> None:
        for path in paths:
            path.unlink(missing_ok=True)

    await asyncio.to_thread(run)


def _read_run(path: Path | None, ids: Sequence[bytes], run: Sequence[_Entry]
              ) -> list[StoredChunk | int]:
    """Chunks lying back to back in one segment, each checked; the segment's number in
    place of a chunk that is gone or damaged."""
    number = run[0].segment
    start = run[0].offset
    try:
        if path is None:
            raise FileNotFoundError(number)
        fd = os.open(path, os.O_RDONLY)
        try:
            span = os.pread(fd, run[-1].offset + run[-1].stored_length - start, start)
        finally:
            os.close(fd)
    except FileNotFoundError:
        return [number] * len(run)
    out: list[StoredChunk | int] = []
    for cid, e in zip(ids, run, strict=True):
        data = span[e.offset - start:e.offset - start + e.stored_length]
        if len(data) != e.stored_length or checksum(data) != e.check:
            out.append(number)
        else:
            out.append(StoredChunk(cid, e.codec, e.raw_length, data))
    return out
