"""Pack appends hand their pages back once they are on disk, and lose nothing doing so."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

import pytest
from nodetest import random_bytes

from node import writeback
from node.packs import Packs

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)


def resident_fraction(path: Path) -> float:
    """The share of `path`'s pages in the page cache (mincore over a mapping of it)."""
    size = path.stat().st_size
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = (ctypes.c_ubyte * pages)()
        anchor = ctypes.c_char.from_buffer(mm)
        try:
            if _libc.mincore(ctypes.addressof(anchor), size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del anchor
        return sum(v & 1 for v in vec) / pages


def droppable(folder: Path) -> bool:
    """Whether this file system gives pages back on POSIX_FADV_DONTNEED (tmpfs does not)."""
    probe = folder / "probe"
    probe.write_bytes(random_bytes(1 << 20, seed=9))
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    gone = resident_fraction(probe) < 0.5
    probe.unlink()
    return gone


def append_in_groups(packs: Packs, payloads: list[bytes], per: int) -> list[tuple[int, int]]:
    """Append `payloads` `per` at a time without syncing, as a put does; their locations."""
    locations = []
    for i in range(0, len(payloads), per):
        locations += packs.append(payloads[i:i + per], sync=False)
    return locations


def assert_read_back(packs: Packs, locations: list[tuple[int, int]],
                     payloads: list[bytes]) -> None:
    for (number, offset), payload in zip(locations, payloads, strict=True):
        assert packs.read(number, offset, len(payload)) == payload


@pytest.mark.parametrize("drop", [True, False])
def test_written_pages_leave_the_cache_once_synced(scratch: Path, drop: bool,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    if not droppable(scratch):
        pytest.skip("this file system keeps its pages on POSIX_FADV_DONTNEED")
    monkeypatch.setattr("node.packs.WRITEBACK_STEP", 256 << 10)
    packs = Packs(scratch / "packs", drop_written=drop)
    try:
        payloads = [random_bytes(100_000, seed=i) for i in range(40)]
        locations = append_in_groups(packs, payloads, 4)
        packs.sync()
        share = resident_fraction(packs.path(packs.current))
        assert share < 0.1 if drop else share > 0.9
        assert_read_back(packs, locations, payloads)
    finally:
        packs.close()


def test_each_append_with_sync_gives_its_pages_back(scratch: Path) -> None:
    if not droppable(scratch):
        pytest.skip("this file system keeps its pages on POSIX_FADV_DONTNEED")
    packs = Packs(scratch / "packs", drop_written=True)
    try:
        payload = random_bytes(1 << 20, seed=3)
        number, offset = packs.append([payload])[0]
        assert resident_fraction(packs.path(number)) < 0.1
        assert packs.read(number, offset, len(payload)) == payload
    finally:
        packs.close()


def test_start_writeback_reports_what_it_did(scratch: Path) -> None:
    path = scratch / "file"
    path.write_bytes(random_bytes(1 << 20, seed=4))
    fd = os.open(path, os.O_RDWR)
    try:
        assert writeback.start_writeback(fd, 0, 0) is False  # nothing to write
        assert writeback.start_writeback(fd, 0, 1 << 20) is (writeback._sync_file_range
                                                               is not None)
    finally:
        os.close(fd)
    assert writeback.start_writeback(-1, 0, 4096) is False  # a bad descriptor: refused


def test_a_refused_hint_fails_nothing(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both calls are hints: when the kernel refuses them, appends and syncs go on."""
    def refuse(*args: object) -> None:
        raise OSError(22, "refused")

    monkeypatch.setattr(os, "posix_fadvise", refuse)
    monkeypatch.setattr(writeback, "_sync_file_range", lambda *args: -1)
    monkeypatch.setattr("node.packs.WRITEBACK_STEP", 64 << 10)
    packs = Packs(scratch / "packs", drop_written=True)
    try:
        payloads = [random_bytes(50_000, seed=i) for i in range(8)]
        locations = append_in_groups(packs, payloads, 2)
        packs.sync()
        locations += packs.append([b"synced at once"])
        assert_read_back(packs, locations, [*payloads, b"synced at once"])
    finally:
        packs.close()
