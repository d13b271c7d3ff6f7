"""Pack files: where chunk bytes live.

Small chunks in a file each would cost an inode, an open and an fsync apiece. Instead
chunks are appended to large append-only pack files; the index keeps (pack, offset,
length). A blob's chunks written in order sit together, so a pull reads long contiguous
ranges. Bytes are fsynced before the index may point at them (see ChunkStore.put).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from node.errors import ResourceExhausted

PACK_LIMIT = 256 << 20
IOV_BATCH = 512  # below IOV_MAX (1024 on Linux)


def _pack_name(number: int) -> str:
    return f"pack-{number:08d}.dat"


class Packs:
    """The pack files of one node: one writer, any number of readers (pread)."""

    def __init__(self, folder: Path, pack_limit: int = PACK_LIMIT) -> None:
        self._folder = folder
        self._limit = pack_limit
        folder.mkdir(parents=True, exist_ok=True)
        numbers = [int(p.name[5:13]) for p in folder.glob("pack-*.dat")]
        self._current = max(numbers, default=1)
        self._write_lock = threading.Lock()
        self._read_fds: dict[int, int] = {}
        self._fd_lock = threading.Lock()
        self._fd = self._open_current()
        # A crash may leave unindexed bytes at the end of a pack; they are never referred
        # to, so appending after them is safe and nothing needs truncating.
        self._size = os.fstat(self._fd).st_size

    def _open_current(self) -> int:
        path = self._folder / _pack_name(self._current)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if created:
            # The new name must be durable too, or a power loss could drop a whole pack
            # whose chunks the index already refers to.
            folder = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        return fd

    def path(self, number: int) -> Path:
        return self._folder / _pack_name(number)

    def append(self, payloads: Sequence[bytes | memoryview], sync: bool = True
               ) -> list[tuple[int, int]]:
        """Append `payloads`, fsynced unless `sync` is False (then `sync()` must run before
        anything refers to them); returns (pack, offset) of each, in order."""
        if not payloads:
            return []
        with self._write_lock:
            if self._size >= self._limit:
                os.fdatasync(self._fd)  # unsynced appends to the old pack must not be lost
                os.close(self._fd)
                self._current += 1
                self._fd = self._open_current()
                self._size = 0
            locations = []
            offset = self._size
            for payload in payloads:
                locations.append((self._current, offset))
                offset += len(payload)
            try:
                for start in range(0, len(payloads), IOV_BATCH):
                    group = payloads[start : start + IOV_BATCH]
                    if os.writev(self._fd, group) != sum(map(len, group)):
                        raise OSError(f"short write to pack {self._current}")
                if sync:
                    os.fdatasync(self._fd)
            except OSError as exc:
                # The bytes may be partly there; the index never points at them.
                self._size = os.fstat(self._fd).st_size
                raise ResourceExhausted(f"cannot write chunk data: {exc}") from exc
            self._size = offset
            return locations

    def sync(self) -> None:
        """Make every append so far durable."""
        with self._write_lock:
            try:
                os.fdatasync(self._fd)
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
            os.close(self._fd)
        with self._fd_lock:
            for fd in self._read_fds.values():
                os.close(fd)
            self._read_fds.clear()
