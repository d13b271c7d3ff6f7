"""Pack files: appends, reads, rollover, and what a crash or a lost file leaves."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from nodetest import collect, pieces, random_bytes, sha256

from node.blobio import write_blob
from node.errors import DataLoss
from node.local import LocalNode
from node.packs import Packs


def test_append_read_and_rollover(scratch: Path) -> None:
    packs = Packs(scratch / "packs", pack_limit=10_000)
    try:
        payloads = [random_bytes(4000, seed=i) for i in range(6)]
        locations = []
        for i in range(0, 6, 2):
            locations += packs.append(payloads[i:i + 2])
        assert len({p for p, _ in locations}) >= 2  # rolled over to a second pack
        for (number, offset), payload in zip(locations, payloads, strict=True):
            assert packs.read(number, offset, len(payload)) == payload
    finally:
        packs.close()
    reopened = Packs(scratch / "packs", pack_limit=10_000)
    try:
        more = reopened.append([b"after a restart"])
        assert more[0][0] == max(p for p, _ in locations)
        assert reopened.read(*more[0], 15) == b"after a restart"
    finally:
        reopened.close()


def test_unindexed_bytes_after_a_crash_are_harmless(scratch: Path) -> None:
    packs = Packs(scratch / "packs")
    [(number, _)] = packs.append([b"indexed"])
    packs.close()
    with packs.path(number).open("ab") as f:
        f.write(b"half-written garbage from a crash")
    again = Packs(scratch / "packs")
    try:
        [(n, offset)] = again.append([b"next"])
        assert again.read(n, offset, 4) == b"next"
        assert again.read(number, 0, 7) == b"indexed"
    finally:
        again.close()


def test_a_new_pack_file_is_made_durable_in_its_directory(
        scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced_dirs: list[str] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync

    def spy(real: object) -> object:
        def call(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                synced_dirs.append(os.readlink(f"/proc/self/fd/{fd}"))
            real(fd)  # type: ignore[operator]
        return call

    monkeypatch.setattr(os, "fsync", spy(real_fsync))
    monkeypatch.setattr(os, "fdatasync", spy(real_fdatasync))
    packs = Packs(scratch / "packs", pack_limit=1000)
    try:
        packs.append([b"x" * 2000])
        packs.append([b"y" * 10])  # rolls over to a new pack file
    finally:
        packs.close()
    folder = str((scratch / "packs").resolve())
    assert synced_dirs.count(folder) >= 2, f"directories fsynced: {synced_dirs}"


def test_a_lost_pack_file_is_data_loss(scratch: Path) -> None:
    data = random_bytes(100_000, seed=9)

    async def go() -> None:
        node = await LocalNode.open(scratch / "data")
        try:
            await write_blob(node, "r", sha256(data), pieces(data))
        finally:
            await node.close()
        folder = scratch / "data" / "packs"
        [pack] = folder.glob("pack-*.dat")
        pack.unlink()
        # A later pack exists, so the lost one is not simply recreated empty.
        (folder / "pack-00000002.dat").write_bytes(b"")
        node = await LocalNode.open(scratch / "data")
        try:
            await collect(node.read_blob(sha256(data)))
        except DataLoss:
            return
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc}") from None
        finally:
            await node.close()
        raise AssertionError("read a blob whose pack is gone")

    asyncio.run(go())


def test_a_retired_pack_outlives_the_reads_that_began_before_it_was_retired(
        scratch: Path) -> None:
    packs = Packs(scratch / "packs", pack_limit=1000)
    try:
        [(old, offset)] = packs.append([b"x" * 2000])
        packs.append([b"next pack"])
        assert packs.current != old
        with packs.reading():  # a read that looked up a location in `old`
            packs.retire(old)
            with packs.reading():  # began after: it can only know the new locations
                assert packs.reclaim() == []
            assert packs.read(old, offset, 4) == b"xxxx"
        assert packs.reclaim() == [old]
        assert not packs.path(old).exists()
        assert packs.retired() == 0
    finally:
        packs.close()


def test_a_pack_held_by_an_uncommitted_write_is_never_settled(scratch: Path) -> None:
    from node.packs import PackHold

    packs = Packs(scratch / "packs", pack_limit=1000)
    try:
        hold = PackHold()
        [(number, _)] = packs.append([b"y" * 2000], hold=hold)
        packs.append([b"rolled over"])
        assert packs.current != number
        assert not packs.settled(number)
        assert packs.trim(number, lambda n: 0) == 0  # held: its tail may yet be committed
        packs.release(hold)
        assert packs.settled(number)
    finally:
        packs.close()
