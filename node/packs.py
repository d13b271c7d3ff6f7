"""Pack files: where chunk bytes live.

Small chunks in a file each would cost an inode, an open and an fsync apiece. Instead
chunks are appended to large append-only pack files; the index keeps (pack, offset,
length). A blob's chunks written in order sit together, so a pull reads long contiguous
ranges. Bytes are fsynced before the index may point at them (see ChunkStore.put).

Garbage collection retires packs it has emptied (node/gc/compaction.py). Two things keep
that safe while the node serves: a writer whose appends are not yet in the index holds
the packs it wrote to (`PackHold`), so no pack it may still point into is ever judged
empty; and every read registers in the current epoch for the span from its index lookup
to its last pread, so a retired pack is deleted only once no read that may have looked up
an old location is still running (epoch-based reclamation).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from node.errors import ResourceExhausted
from node.packwriter import PackWriter

log = logging.getLogger(__name__)

PACK_LIMIT = 256 << 20


def _pack_name(number: int) -> str:
    return f"pack-{number:08d}.dat"


class PackHold:
    """The packs one writer has appended to and not yet committed to the index."""

    def __init__(self) -> None:
        self.numbers: set[int] = set()


class Packs:
    """The pack files of one node: one writer, any number of readers (pread)."""

    def __init__(self, folder: Path, pack_limit: int = PACK_LIMIT,
                 direct: bool = True) -> None:
        self._folder = folder
        self._limit = pack_limit
        self._direct = direct
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name[5:13]) for p in folder.glob("pack-*.dat")]
        self._current = max(numbers, default=1)
        self._write_lock = threading.Lock()
        self._read_fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._holds: Counter[int] = Counter()  # pack -> writers holding it (under _write_lock)
        self._epoch_lock = threading.Lock()
        self._epoch = 0
        self._readers: Counter[int] = Counter()  # epoch -> reads in flight
        self._retired: list[tuple[int, int]] = []  # (pack, epoch when retired)
        # A crash may leave unindexed bytes at the end of a pack; they are never referred
        # to, so appending after them is safe and nothing needs truncating.
        self._writer = self._open_current()

    def _open_current(self) -> PackWriter:
        path = self._folder / _pack_name(self._current)
        created = not path.exists()
        writer = PackWriter(path, self._direct)
        if created:
            # The new name must be durable too, or a power loss could drop a whole pack
            # whose chunks the index already refers to.
            self._sync_folder()
        return writer

    def path(self, number: int) -> Path:
        return self._folder / _pack_name(number)

    @property
    def current(self) -> int:
        return self._current

    def numbers(self) -> list[int]:
        """Every pack on disk, in order."""
        return sorted(int(p.name[5:13]) for p in self._folder.glob("pack-*.dat"))

    def size(self, number: int) -> int:
        """Bytes in pack `number` (the current pack's file may be padded past them)."""
        with self._write_lock:
            if number == self._current:
                return self._writer.size
        return self._file_size(number)

    def _file_size(self, number: int) -> int:
        try:
            return self.path(number).stat().st_size
        except FileNotFoundError:
            return 0

    def _roll(self) -> None:
        self._writer.sync()  # unsynced appends to the old pack must not be lost
        self._writer.close()
        self._current += 1
        self._writer = self._open_current()

    def append(self, payloads: Sequence[bytes | memoryview], sync: bool = True,
               hold: PackHold | None = None) -> list[tuple[int, int]]:
        """Append `payloads`, fsynced unless `sync` is False (then `sync()` must run before
        anything refers to them); returns (pack, offset) of each, in order. With `hold`,
        the pack written to stays held until `release(hold)`."""
        if not payloads:
            return []
        with self._write_lock:
            if self._writer.size >= self._limit:
                self._roll()
            if hold is not None and self._current not in hold.numbers:
                hold.numbers.add(self._current)
                self._holds[self._current] += 1
            locations = []
            offset = self._writer.size
            for payload in payloads:
                locations.append((self._current, offset))
                offset += len(payload)
            try:
                self._writer.append(payloads)
                if sync:
                    self._writer.sync()
            except OSError as exc:
                # The bytes may be partly there; the index never points at them.
                raise ResourceExhausted(f"cannot write chunk data: {exc}") from exc
            return locations

    def release(self, hold: PackHold) -> None:
        """The writer's appends are now in the index, or abandoned."""
        with self._write_lock:
            for number in hold.numbers:
                self._holds[number] -= 1
                if self._holds[number] <= 0:
                    del self._holds[number]
            hold.numbers.clear()

    def settled(self, number: int) -> bool:
        """No writer holds `number` and it is not the pack being appended to: every index
        entry that will ever point into it is committed already."""
        with self._write_lock:
            return number != self._current and not self._holds[number]

    def seal_current(self) -> bool:
        """Start a new pack, so the current one can be compacted; refused (False) while a
        writer holds it or when it is empty."""
        with self._write_lock:
            if self._holds[self._current] or self._writer.size == 0:
                return False
            self._roll()
            return True

    def trim(self, number: int, committed_end: Callable[[int], int | None]) -> int:
        """Cut pack `number` back to the end of its last committed chunk when no writer
        holds it: what lies past that is what a crash or an abandoned write left. The end
        is read under the write lock, once no append can be pending, so a write committed
        a moment ago is never cut. Returns the bytes cut."""
        with self._write_lock:
            if self._holds[number]:
                return 0
            end = committed_end(number)
            if end is None:
                return 0  # written before ends were recorded: nothing to go by
            if number == self._current:
                cut = self._writer.size - end
                if cut > 0:
                    self._writer.truncate(end)
                return max(cut, 0)
            size = self._file_size(number)
            if size <= end:
                return 0
            fd = os.open(self.path(number), os.O_WRONLY)
            try:
                os.ftruncate(fd, end)
                os.fdatasync(fd)
            finally:
                os.close(fd)
            return size - end

    # -- reads against retirement ----------------------------------------------------------

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Wrap an index lookup and the preads that follow it: a pack retired meanwhile
        outlives this block."""
        with self._epoch_lock:
            epoch = self._epoch
            self._readers[epoch] += 1
        try:
            yield
        finally:
            with self._epoch_lock:
                self._readers[epoch] -= 1
                if not self._readers[epoch]:
                    del self._readers[epoch]

    def retire(self, number: int) -> None:
        """No index entry points into `number` any more; delete it once the reads that may
        have looked up a location in it before now are done (see `reclaim`)."""
        with self._epoch_lock:
            self._retired.append((number, self._epoch))
            self._epoch += 1

    def reclaim(self) -> list[int]:
        """Delete the retired packs no read can still be using; returns their numbers."""
        with self._epoch_lock:
            oldest = min(self._readers, default=self._epoch)
            ready = [n for n, e in self._retired if e < oldest]
            self._retired = [(n, e) for n, e in self._retired if e >= oldest]
        for number in ready:
            with self._fd_lock:
                fd = self._read_fds.pop(number, None)
            if fd is not None:
                os.close(fd)
            with suppress(FileNotFoundError):
                self.path(number).unlink()
        if ready:
            self._sync_folder()
            log.info("deleted packs %s", ", ".join(map(str, ready)))
        return ready

    def retired(self) -> int:
        with self._epoch_lock:
            return len(self._retired)

    def _sync_folder(self) -> None:
        folder = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)

    def sync(self) -> None:
        """Make every append so far durable."""
        with self._write_lock:
            try:
                self._writer.sync()
            except OSError as exc:
                raise ResourceExhausted(f"cannot sync chunk data: {exc}") from exc

    def read(self, number: int, offset: int, length: int) -> bytes:
        fd = self._read_fds.get(number)
        if fd is None:
            with self._fd_lock:
                fd = self._read_fds.get(number)
                if fd is None:
                    fd = os.open(self.path(number), os.O_RDONLY)
                    self._read_fds[number] = fd
        return os.pread(fd, length, offset)

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
        with self._fd_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
