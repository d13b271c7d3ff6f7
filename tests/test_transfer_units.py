"""The pure parts of `shoal push/pull`: image references and the upload watchdog."""

from __future__ import annotations

import asyncio

import pytest

from shoal.transfer.client import RegistryError, Watchdog
from shoal.transfer.reference import parse


def test_references() -> None:
    ref = parse("localhost:5000/team/app:v1")
    assert (ref.scheme, ref.host, ref.repository, ref.tag, ref.digest) == \
        ("http", "localhost:5000", "team/app", "v1", None)
    assert ref.base == "http://localhost:5000/v2/team/app"
    assert parse("registry.example.com/app").scheme == "https"
    assert parse("registry.example.com/app").reference == "latest"
    assert parse("registry.example.com/app", insecure=True).scheme == "http"
    assert parse("https://127.0.0.1:5000/app").scheme == "https"
    digest = "sha256:" + "a" * 64
    pinned = parse(f"127.0.0.1:5000/app@{digest}")
    assert pinned.reference == digest and pinned.tag is None
    assert str(parse(f"h:1/app:v1@{digest}")) == f"h:1/app:v1@{digest}"
    for bad in ("app", "host/", "host/App", "host/app:bad tag", "host/app@sha256:12"):
        with pytest.raises(ValueError):
            parse(bad)


def test_the_watchdog_fails_a_stalled_transfer_and_spares_a_moving_one() -> None:
    async def stalled() -> None:
        await asyncio.sleep(60)

    async def moving(dog: Watchdog) -> str:
        for _ in range(6):
            await asyncio.sleep(0.05)
            dog.moved()
        return "done"

    async def run() -> None:
        with pytest.raises(RegistryError, match="no progress for 0 s"):
            await Watchdog(stall=0.2).guard(stalled(), "uploading")
        dog = Watchdog(stall=0.2)
        assert await dog.guard(moving(dog), "uploading") == "done"

    asyncio.run(run())
