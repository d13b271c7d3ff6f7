"""The pack writer: appends staged and written in whole blocks around the page cache,
with the same bytes on disk whichever way they went, across syncs, restarts and cuts."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from nodetest import random_bytes

from node import packwriter
from node.errors import ResourceExhausted
from node.packs import Packs
from node.packwriter import BLOCK, PackWriter

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


@pytest.fixture(params=[True, False], ids=["direct", "buffered"])
def direct(request: pytest.FixtureRequest, scratch: Path) -> bool:
    wanted: bool = request.param
    if wanted:
        probe = PackWriter(scratch / "probe", direct=True)
        supported = probe.direct
        probe.close()
        (scratch / "probe").unlink()
        if not supported:
            pytest.skip("this file system has no O_DIRECT")
    return wanted


@pytest.fixture
def small_stage(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A stage of a few blocks, so appends wrap it many times."""
    monkeypatch.setattr(packwriter, "STAGE", 4 * BLOCK)
    monkeypatch.setattr(packwriter, "WRITE_AT", 2 * BLOCK)
    yield


def write_all(writer: PackWriter, payloads: list[bytes], per: int = 3) -> list[int]:
    """Append `payloads` a few at a time; the offset of each."""
    offsets = []
    for i in range(0, len(payloads), per):
        group = payloads[i:i + per]
        at = writer.size
        writer.append(group)
        for payload in group:
            offsets.append(at)
            at += len(payload)
    return offsets


def odd_payloads(count: int, seed: int = 0) -> list[bytes]:
    # Sizes that straddle blocks and the stage: some tiny, some bigger than the stage.
    sizes = [1, 4095, 4097, 100, 20_000, 7, 65_537, 3000, 12_288, 513]
    return [random_bytes(sizes[i % len(sizes)], seed=seed + i) for i in range(count)]


def test_synced_appends_read_back_and_the_file_ends_in_zeros(
        scratch: Path, direct: bool, small_stage: None) -> None:
    path = scratch / "pack"
    writer = PackWriter(path, direct)
    assert writer.direct is direct
    payloads = odd_payloads(23)
    offsets = write_all(writer, payloads)
    writer.sync()
    end = writer.size
    data = path.read_bytes()
    for offset, payload in zip(offsets, payloads, strict=True):
        assert data[offset:offset + len(payload)] == payload
    assert end == sum(map(len, payloads))
    assert len(data) == -(-end // BLOCK) * BLOCK  # padded to a whole block...
    assert data[end:] == bytes(len(data) - end)  # ...with zeros nothing points at
    writer.append([b"never synced"])
    writer.close()
    assert path.read_bytes() == data[:end]  # closing cuts the padding and the unsynced


def test_syncs_between_appends_rewrite_the_last_block_with_the_same_bytes(
        scratch: Path, direct: bool) -> None:
    path = scratch / "pack"
    writer = PackWriter(path, direct)
    payloads = odd_payloads(12, seed=40)
    offsets = []
    for payload in payloads:  # one append and one sync each, as small puts do
        offsets += write_all(writer, [payload])
        writer.sync()
        data = path.read_bytes()
        for offset, earlier in zip(offsets, payloads, strict=False):
            assert data[offset:offset + len(earlier)] == earlier
    writer.close()


def test_after_a_crash_appends_go_after_the_padding(scratch: Path, direct: bool) -> None:
    path, crashed = scratch / "pack", scratch / "crashed"
    writer = PackWriter(path, direct)
    first = odd_payloads(5, seed=7)
    before = write_all(writer, first)
    writer.sync()
    crashed.write_bytes(path.read_bytes())  # the file as a crash right now would leave it
    writer.close()
    reopened = PackWriter(crashed, direct)
    assert reopened.size == crashed.stat().st_size > sum(map(len, first))
    second = odd_payloads(5, seed=70)
    after = write_all(reopened, second)
    reopened.sync()
    reopened.close()
    data = crashed.read_bytes()
    for offset, payload in zip(before + after, first + second, strict=True):
        assert data[offset:offset + len(payload)] == payload


def test_a_cut_to_any_length_keeps_what_precedes_it(scratch: Path, direct: bool,
                                                      small_stage: None) -> None:
    path = scratch / "pack"
    writer = PackWriter(path, direct)
    payloads = odd_payloads(8, seed=11)
    offsets = write_all(writer, payloads)
    writer.sync()
    keep = 5  # cut in the middle of a block, after the fifth payload
    end = offsets[keep]
    writer.truncate(end)
    assert writer.size == end
    more = random_bytes(10_000, seed=99)
    writer.append([more])
    writer.sync()
    writer.close()
    data = path.read_bytes()
    for offset, payload in zip(offsets[:keep], payloads[:keep], strict=True):
        assert data[offset:offset + len(payload)] == payload
    assert data[end:end + len(more)] == more


def test_direct_appends_leave_the_page_cache_alone(scratch: Path) -> None:
    path = scratch / "pack"
    writer = PackWriter(path, direct=True)
    if not writer.direct:
        writer.close()
        pytest.skip("this file system has no O_DIRECT")
    write_all(writer, [random_bytes(1 << 20, seed=i) for i in range(8)])
    writer.sync()
    writer.close()
    assert resident_fraction(path) < 0.1


def test_a_failed_write_loses_nothing_committed_and_later_appends_go_on(
        scratch: Path, direct: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    packs = Packs(scratch / "packs", direct=direct)
    try:
        committed = packs.append([random_bytes(5000, seed=1)])  # synced
        real_pwrite = os.pwrite
        failures = iter([True])

        def full_disk(fd: int, data: object, offset: int) -> int:
            if next(failures, False):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "pwrite", full_disk)
        with pytest.raises(ResourceExhausted, match="No space"):
            packs.append([random_bytes(3 << 20, seed=2)], sync=True)
        later = packs.append([b"the disk has room again"])
        assert packs.read(*committed[0], 5000) == random_bytes(5000, seed=1)
        assert packs.read(*later[0], 23) == b"the disk has room again"
    finally:
        packs.close()


def test_a_file_system_that_refuses_direct_writes_gets_buffered_ones(
        scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Some file systems take O_DIRECT at open and then want a larger alignment: the
    writer carries on through the page cache, and loses nothing."""
    import fcntl

    real_pwrite = os.pwrite

    def picky(fd: int, data: object, offset: int) -> int:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_pwrite(fd, data, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "pwrite", picky)
    path = scratch / "pack"
    writer = PackWriter(path, direct=True)
    if not writer.direct:
        writer.close()
        pytest.skip("this file system has no O_DIRECT")
    payloads = odd_payloads(9, seed=50)
    offsets = write_all(writer, payloads)
    writer.sync()
    assert not writer.direct
    writer.close()
    data = path.read_bytes()
    for offset, payload in zip(offsets, payloads, strict=True):
        assert data[offset:offset + len(payload)] == payload
