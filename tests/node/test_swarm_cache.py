"""The edge's chunk cache: reads checked, LRU eviction that spares pinned chunks and
withdraws what it drops, damaged segments never served, peers waiting for landing chunks."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nodetest import encode, random_bytes

from node.api import StoredChunk
from node.errors import NotFound
from node.swarm.cache import ChunkCache
from node.swarm.holders import Holding


async def open_cache(folder: Path, limit: int) -> tuple[ChunkCache, list[Holding]]:
    dropped: list[Holding] = []
    cache = ChunkCache(folder, limit, dropped.extend)
    await cache.open()
    return cache, dropped


async def test_written_chunks_read_back_and_are_marked(scratch: Path) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(300_000, seed=1))
    await cache.write(chunks)
    ids = [c.id for c in chunks]
    got = await cache.read(ids)
    assert [bytes(c.data) for c in got] == [bytes(c.data) for c in chunks]
    assert cache.mark("sha256:x", len(ids) + 2, 2, ids) == ((1 << len(ids)) - 1) << 2
    assert cache.holdings == {("sha256:x", len(ids) + 2): ((1 << len(ids)) - 1) << 2}
    with pytest.raises(NotFound):
        await cache.read([b"\0" * 32])


async def test_least_recently_used_unpinned_segments_go_first(scratch: Path) -> None:
    parts = [encode(random_bytes(200_000, seed=s)) for s in range(4)]
    size = sum(len(c.data) for c in parts[0])
    cache, dropped = await open_cache(scratch / "c", int(size * 2.5))
    await cache.write(parts[0])
    await cache.write(parts[1])
    cache.mark("sha256:a", 100, 0, [c.id for c in parts[0]])
    cache.pin([parts[1][0].id])
    await cache.read([parts[0][0].id])             # part 0 is now the most recently used
    await cache.write(parts[2])
    await cache.write(parts[3])
    assert cache.size <= cache.limit
    assert all(cache.has([c.id for c in parts[1]]))      # pinned: kept though older
    assert not any(cache.has([c.id for c in parts[0]]))  # least recently used unpinned
    assert dropped and dropped[0].digest == "sha256:a" and dropped[0].dropped
    assert cache.holdings == {}
    assert cache.evicted_bytes > 0


async def test_a_damaged_segment_is_dropped_not_served(scratch: Path) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(100_000, seed=2))
    await cache.write(chunks)
    segment = next((scratch / "c").glob("seg-*"))
    raw = bytearray(segment.read_bytes())
    raw[10] ^= 0xFF
    segment.write_bytes(bytes(raw))
    with pytest.raises(NotFound):
        await cache.read([c.id for c in chunks])
    assert not any(cache.has([c.id for c in chunks]))
    assert not segment.exists()


async def test_a_peer_waits_for_chunks_still_landing(scratch: Path) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(100_000, seed=3))
    ids = [c.id for c in chunks]
    cache.expect(ids)

    async def serve() -> list[StoredChunk]:
        return [c async for run in cache.chunk_runs(ids) for c in run]

    waiting = asyncio.create_task(serve())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await cache.write(chunks)
    assert [c.id for c in await waiting] == ids


async def test_a_chunk_that_never_lands_is_not_found(scratch: Path) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(50_000, seed=4))
    ids = [c.id for c in chunks]
    cache.expect(ids)
    cache.settle(ids)  # the fetch failed

    with pytest.raises(NotFound):
        async for _ in cache.chunk_runs(ids):
            pass
