"""Pack bytes on their way to disk through the page cache: writeback started early.

Chunk bytes are appended to a pack as they arrive and fsynced once, when the put commits
(node/chunkstore.py). Every WRITEBACK_STEP bytes, `start_writeback` (sync_file_range with
SYNC_FILE_RANGE_WRITE) queues the writeback of the bytes just appended and returns without
waiting. With plenty of memory the kernel would otherwise leave them dirty until the
commit's fsync (background writeback starts at a tenth of memory: gigabytes), so the disk
would idle while chunks arrive and then write everything while the client waits for its
acknowledgement. RocksDB's `bytes_per_sync` does the same. Measured with 512 MiB appended
in 4 MiB writes: the final fdatasync took 0.11-0.21 s before, under 0.01 s after.

This matters only where pack bytes go through the page cache: where the file system has
no O_DIRECT, or with `--buffered-packs` (node/packwriter.py).

The call is not needed for durability, which is the fsync's job: where it is missing (not
Linux, not glibc) it is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

SYNC_FILE_RANGE_WRITE = 2
WRITEBACK_STEP = 8 << 20  # unflushed bytes that start a writeback


def _load() -> Callable[[int, int, int, int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        fn = ctypes.CDLL(name, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load()


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Queue the writeback of `length` bytes at `offset` of `fd` (ctypes lets go of the
    GIL meanwhile). False when the call is unavailable or refused: harmless, the caller's
    fsync does the work."""
    if _sync_file_range is None or length <= 0:
        return False
    if _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE) != 0:
        log.debug("sync_file_range: %s", os.strerror(ctypes.get_errno()))
        return False
    return True
