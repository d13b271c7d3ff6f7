"""The appending end of the current pack: chunk bytes go to disk around the page cache.

Appends are copied into an aligned staging buffer and written in whole blocks with
O_DIRECT: the device reads them straight from that buffer. The partial block at the end
stays staged; a sync writes it padded with zeros and the next append writes that block
again, longer (bytes the index may point at are rewritten with the same values, as the
page cache would rewrite a page). So while it is being appended to, the pack file may end
in up to a block of zeros past its last chunk; closing the writer (the pack is full, or the
node stops) cuts them off, and after a crash they are a dead tail like any other, which
nothing refers to, appends skip over and garbage collection trims.

Why not the page cache: a push would fill it with bytes a pull may never read, evicting
the layers pulls are reading, and copying into it costs more CPU than the rest of a put
(object stores make the same choice: Ceph's BlueStore and MinIO write with O_DIRECT).
Measured on the benchmark machine, 512 MiB of 16 KiB chunks appended 1 MiB at a time:
0.22-0.30 ms of CPU per MB and 890-1090 MB/s, against 1.1-2.4 ms and 366-601 MB/s through
the page cache (a VM whose memory is backed on first use, where fresh page cache costs the
most). Reads stay buffered (node/packs.py): the first read of a pushed blob comes from
disk, later ones from the page cache.

Where the file system refuses O_DIRECT (tmpfs), or with `direct=False`, the same code
writes through the page cache and starts the writeback every WRITEBACK_STEP bytes so the
commit's fsync has little left to do (node/writeback.py).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path

from node.writeback import WRITEBACK_STEP, start_writeback

log = logging.getLogger(__name__)

BLOCK = 4096         # alignment of O_DIRECT offsets, lengths and memory (4096 covers 512)
STAGE = 8 << 20      # each of the two staging buffers: the most written in one call
WRITE_AT = 1 << 20   # staged bytes that make an append write its whole blocks


class PackWriter:
    """Appends to one pack file; one writer at a time (Packs holds its write lock).

    Two staging buffers take turns: while one's whole blocks are being written by the
    writer's own thread, appends fill the other, so the device works while the caller
    verifies the next chunks. A write that fails leaves its bytes staged and is retried by
    the next append or sync, which raises meanwhile: no staged byte is ever dropped, so no
    sync returns before every byte appended before it is on disk.
    """

    def __init__(self, path: Path, direct: bool = True) -> None:
        flags = os.O_RDWR | os.O_CREAT
        self._path = path
        self.direct = False
        if direct and hasattr(os, "O_DIRECT"):
            try:
                self._fd = os.open(path, flags | os.O_DIRECT, 0o644)
                self.direct = True
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                log.info("%s: no O_DIRECT on this file system, writing through the page "
                         "cache", path.parent)
        if not self.direct:
            self._fd = os.open(path, flags, 0o644)
        self._stages = [mmap.mmap(-1, STAGE), mmap.mmap(-1, STAGE)]
        self._views = [memoryview(stage) for stage in self._stages]
        self._view = self._views[0]  # the buffer appends fill
        self._io = ThreadPoolExecutor(1, thread_name_prefix="pack-write")
        # The write in flight (or failed, to retry): its future, bytes and offset.
        self._writing: tuple[Future[None] | None, memoryview, int] | None = None
        end = os.fstat(self._fd).st_size
        # Bytes [_base, _base + _filled) are staged in _view; all before _base are written
        # or being written.
        self._base = end - end % BLOCK
        self._filled = 0
        self._hinted = self._base  # buffered mode: writeback started up to here
        if end > self._base:
            self._filled = os.preadv(self._fd, [self._view[:BLOCK]], self._base)
        self._synced = end  # what the last sync made durable, padding excluded

    @property
    def size(self) -> int:
        """Where the next append lands: every byte before it is written or staged."""
        return self._base + self._filled

    def append(self, payloads: Sequence[bytes | memoryview]) -> None:
        """Stage `payloads` and start writing the whole blocks once a good amount is
        staged; the bytes are durable only after `sync`. On OSError the payloads may be
        partly staged: nothing will point at them, and later appends go after them."""
        for payload in payloads:
            done, length = 0, len(payload)
            while done < length:
                if self._filled == STAGE:
                    self._write_blocks()
                take = min(length - done, STAGE - self._filled)
                self._view[self._filled:self._filled + take] = payload[done:done + take]
                self._filled += take
                done += take
        if self._filled >= WRITE_AT:
            self._write_blocks()

    def sync(self) -> None:
        """Write everything staged, the last partial block padded, and fdatasync."""
        self._write_blocks()
        self._settle()
        if self._filled:
            self._view[self._filled:BLOCK] = bytes(BLOCK - self._filled)
            self._pwrite(self._view[:BLOCK], self._base)
        os.fdatasync(self._fd)
        self._synced = self.size

    def truncate(self, end: int) -> None:
        """Cut the pack to `end` bytes, durably; the next append lands there."""
        self._write_blocks()
        self._settle()
        os.ftruncate(self._fd, end)
        os.fdatasync(self._fd)
        self._base = end - end % BLOCK
        self._filled = 0
        self._hinted = min(self._hinted, self._base)
        if end > self._base:
            self._filled = os.preadv(self._fd, [self._view[:BLOCK]], self._base)
        self._synced = end

    def close(self) -> None:
        """Stop writing, the file cut back to its last synced byte: no padding, and no
        bytes appended since that sync (nothing refers to them, as after a crash)."""
        with suppress(OSError):
            self._settle()
        self._io.shutdown()
        with suppress(OSError):
            if os.fstat(self._fd).st_size > self._synced:
                os.ftruncate(self._fd, self._synced)
                os.fdatasync(self._fd)
        self._writing = None  # a write that failed twice: its bytes were never synced
        os.close(self._fd)
        # A traceback may still hold a slice of a buffer; it is then unmapped when the
        # last reference goes.
        with suppress(BufferError):
            for view in self._views:
                view.release()
            for stage in self._stages:
                stage.close()

    def _write_blocks(self) -> None:
        """Start writing the staged whole blocks; the partial one moves to the other
        buffer, which appends fill meanwhile."""
        whole = self._filled - self._filled % BLOCK
        if not whole:
            return
        self._settle()  # the other buffer is free once its write is done
        blocks = self._view[:whole]
        self._writing = (self._io.submit(self._pwrite, blocks, self._base), blocks, self._base)
        other = self._views[1] if self._view is self._views[0] else self._views[0]
        rest = self._filled - whole
        other[:rest] = self._view[whole:self._filled]
        self._view = other
        self._base += whole
        self._filled = rest

    def _settle(self) -> None:
        """Wait for the write in flight; a failed one is retried here."""
        if self._writing is None:
            return
        future, blocks, offset = self._writing
        try:
            if future is not None:
                future.result()
            else:
                self._pwrite(blocks, offset)
        except OSError:
            self._writing = (None, blocks, offset)
            raise
        self._writing = None
        end = offset + len(blocks)
        if not self.direct and end - self._hinted >= WRITEBACK_STEP:
            start_writeback(self._fd, self._hinted, end - self._hinted)
            self._hinted = end

    def _pwrite(self, data: memoryview, offset: int) -> None:
        """Write `data` at `offset`. Never runs beside another write or read of the file:
        one write is in flight at a time, and syncs and cuts settle it first."""
        written = 0
        while written < len(data):
            # A short write is possible (a signal, a full disk); the rest is retried and
            # a real failure raises.
            try:
                step = os.pwrite(self._fd, data[written:], offset + written)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._stop_direct(exc)
                continue
            if step <= 0:
                raise OSError(errno.ENOSPC, "pack write made no progress")
            written += step

    def _stop_direct(self, exc: OSError) -> None:
        """The file system took O_DIRECT at open but refuses its writes (it wants a larger
        alignment than BLOCK, or a short write left one unaligned): write through the page
        cache from here on rather than fail every put."""
        log.warning("%s: O_DIRECT writes refused (%s); writing through the page cache",
                    self._path, exc)
        fd = os.open(self._path, os.O_RDWR)
        os.close(self._fd)
        self._fd = fd
        self.direct = False
