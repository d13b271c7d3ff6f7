"""Keeping a long-running process's memory flat under glibc.

Streaming allocates and frees MiB-sized buffers all the time. glibc serves a buffer over
its mmap threshold with mmap and returns it on free, but raises that threshold each time
such a buffer is freed, up to 32 MiB, so ever larger buffers come from the heap, which
it rarely gives back: resident memory then grew with the largest blob ever moved
(measured: +104 MiB after a 500 MiB layer). Pinning the threshold at 4 MiB keeps the
streaming pieces (about 1 MiB, reused from the heap: a fresh mmap per piece costs 256
page faults and halved pull throughput) apart from the rare larger buffers, which go
back to the system as soon as they are freed. Fewer arenas keep worker threads from
each growing a heap of their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

THRESHOLD = 4 << 20
ARENAS = 2

log = logging.getLogger(__name__)


def pin_allocator() -> bool:
    """Apply the settings above; False (and nothing changed) where libc is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, THRESHOLD), (M_TRIM_THRESHOLD, THRESHOLD), (M_ARENA_MAX, ARENAS)))
    if not ok:
        log.warning("mallopt refused a setting: memory may grow with the largest blob")
    return ok
