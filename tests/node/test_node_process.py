"""A real `python -m shoal node` process: graceful shutdown, durability across kill -9, and
corrupted chunk files detected and reported, never served."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest
from nodetest import NodeProcess, collect, pieces, random_bytes, sha256, text_bytes

from node.blobio import write_blob
from node.errors import DataLoss
from node.local import LocalNode
from node.recipe import Recipe
from node.rpc.client import RemoteNode


def run_async(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_node_exits_cleanly_and_promptly_on_a_signal(proc: NodeProcess,
                                                     sig: signal.Signals) -> None:
    proc.start()
    assert proc.proc is not None
    started = time.monotonic()
    os.kill(proc.proc.pid, sig)
    assert proc.proc.wait(15) == 0
    assert time.monotonic() - started < 10
    assert "Traceback" not in proc.log()


def test_sigterm_with_a_client_connected_and_a_restart(proc: NodeProcess) -> None:
    data = random_bytes(300_000, seed=3)

    async def push() -> None:
        remote = RemoteNode(proc.start().target)
        try:
            await write_blob(remote, "r", sha256(data), pieces(data))
            assert proc.stop() == 0
        finally:
            await remote.close()

    run_async(push())

    async def read() -> bytes:
        remote = RemoteNode(proc.start().target)
        try:
            return await collect(remote.read_blob(sha256(data)))
        finally:
            await remote.close()

    assert run_async(read()) == data
    assert proc.stop() == 0


def test_an_acknowledged_push_survives_kill_9(proc: NodeProcess) -> None:
    data = random_bytes(5 << 20, seed=4) + text_bytes(3 << 20, seed=4)
    small = b"a small blob"

    async def push() -> None:
        remote = RemoteNode(proc.start().target)
        try:
            await write_blob(remote, "lib/app", sha256(small), pieces(small))
            await write_blob(remote, "lib/app", sha256(data), pieces(data, 1 << 18))
            proc.kill()  # the moment the last call returned: no flush, no close
        finally:
            await remote.close()

    run_async(push())
    assert proc.proc is not None and proc.proc.returncode == -signal.SIGKILL

    async def check() -> None:
        remote = RemoteNode(proc.start().target)
        try:
            assert await collect(remote.read_blob(sha256(data))) == data
            assert await collect(remote.read_blob(sha256(small))) == small
            info = await remote.stat_repository_blob("lib/app", sha256(data))
            assert info is not None and info.size == len(data)
            # And the node keeps working on the same data: the same push deduplicates.
            await write_blob(remote, "lib/other", sha256(data), pieces(data))
        finally:
            await remote.close()

    run_async(check())
    assert proc.stop() == 0


def _flip_a_byte_in(data_dir: Path, digest: str, chunk: int) -> bytes:
    """Flip one byte in the middle of the `chunk`th chunk of blob `digest`, in its pack
    file; returns the chunk's id."""

    async def locate() -> tuple[Recipe, Path, int]:
        node = await LocalNode.open(data_dir)
        try:
            recipe = await node.get_recipe(digest)
            [entry] = node.chunks.entries([recipe.ids[chunk]])
            assert entry is not None
            return recipe, node.packs.path(entry.pack), entry.offset + entry.stored_length // 2
        finally:
            await node.close()

    recipe, pack, offset = asyncio.run(locate())
    with pack.open("r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x20]))
    return recipe.ids[chunk]


def test_a_corrupted_chunk_is_never_served_and_is_reported(proc: NodeProcess) -> None:
    data = random_bytes(1 << 20, seed=5)  # incompressible: chunks rest raw in the pack
    digest = sha256(data)

    async def push() -> Recipe:
        remote = RemoteNode(proc.start().target)
        try:
            await write_blob(remote, "r", digest, pieces(data))
            return await remote.get_recipe(digest)
        finally:
            await remote.close()

    recipe = run_async(push())
    assert isinstance(recipe, Recipe) and len(recipe) > 4
    assert proc.stop() == 0
    bad = 3
    bad_id = _flip_a_byte_in(proc.data, digest, bad)
    bad_start = sum(recipe.lengths[:bad])
    bad_end = bad_start + recipe.lengths[bad]

    async def read() -> None:
        remote = RemoteNode(proc.start().target)
        try:
            received = bytearray()
            with pytest.raises(DataLoss, match=bad_id.hex()):
                async for piece in remote.read_blob(digest):
                    received += piece
            # Whatever arrived before the error is the blob's true bytes, and none is
            # from the corrupted chunk on.
            assert len(received) <= bad_start
            assert received == data[:len(received)]
            with pytest.raises(DataLoss):
                await collect(remote.read_blob(digest, bad_start + 1, 10))
            with pytest.raises(DataLoss):
                _ = [c async for c in remote.get_chunks([bad_id])]
            # Ranges that avoid the chunk still read.
            assert await collect(remote.read_blob(digest, 0, bad_start)) == data[:bad_start]
            assert await collect(remote.read_blob(digest, bad_end)) == data[bad_end:]
        finally:
            await remote.close()

    run_async(read())
    assert proc.stop() == 0
    errors = [line for line in proc.log().splitlines() if " ERROR " in line]
    assert any(bad_id.hex() in line for line in errors), proc.log()

    async def corrupt_table() -> dict[str, dict[str, object]]:
        node = await LocalNode.open(proc.data)
        try:
            return node.chunks.corrupt_chunks()
        finally:
            await node.close()

    table = run_async(corrupt_table())
    assert isinstance(table, dict)
    assert list(table) == [bad_id.hex()]
    assert "does not match" in str(table[bad_id.hex()]["why"])


def test_a_truncated_pack_is_data_loss(scratch: Path) -> None:
    data = random_bytes(300_000, seed=6)

    async def go() -> None:
        node = await LocalNode.open(scratch / "data")
        try:
            await write_blob(node, "r", sha256(data), pieces(data))
        finally:
            await node.close()
        [pack] = (scratch / "data" / "packs").glob("pack-*.dat")
        with pack.open("r+b") as f:
            f.truncate(pack.stat().st_size - 1000)
        node = await LocalNode.open(scratch / "data")
        try:
            with pytest.raises(DataLoss):
                await collect(node.read_blob(sha256(data)))
            assert len(node.chunks.corrupt_chunks()) == 1
        finally:
            await node.close()

    asyncio.run(go())
