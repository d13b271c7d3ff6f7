"""Writeback started early on buffered pack appends: a hint, never a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from nodetest import random_bytes

from node import writeback
from node.packs import Packs


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
    """The writeback is a hint: when the kernel refuses it, appends and syncs go on."""
    calls = []

    def refuse(*args: object) -> int:
        calls.append(args)
        return -1

    monkeypatch.setattr(writeback, "_sync_file_range", refuse)
    monkeypatch.setattr("node.packwriter.WRITEBACK_STEP", 64 << 10)
    packs = Packs(scratch / "packs", direct=False)
    try:
        payloads = [random_bytes(50_000, seed=i) for i in range(8)]
        locations = append_in_groups(packs, payloads, 2)
        packs.sync()
        locations += packs.append([b"synced at once"])
        assert_read_back(packs, locations, [*payloads, b"synced at once"])
        assert calls  # the hint was tried, and refused
    finally:
        packs.close()
