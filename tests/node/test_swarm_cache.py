"""The edge's chunk cache: reads checked, LRU eviction that spares pinned chunks and
withdraws what it drops, damaged segments never served, peers waiting for landing chunks
and sent what landed at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from nodetest import encode, random_bytes

from node.api import StoredChunk
from node.errors import InvalidArgument, NotFound
from node.swarm.cache import ChunkCache
from node.swarm.holders import Holding
from node.swarm.service import Runs


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


async def segments(cache: ChunkCache, *seeds: int) -> list[list[StoredChunk]]:
    """One segment written per seed (300 KB of chunks each); their chunks."""
    written = []
    for seed in seeds:
        chunks = encode(random_bytes(300_000, seed=seed))
        await cache.write(chunks)
        written.append(chunks)
    return written


async def test_a_reopened_cache_has_what_was_written(scratch: Path) -> None:
    """An edge's restart keeps its cache: every segment's trailer indexes it again, and new
    segments do not take the old ones' names."""
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    first, second = await segments(cache, 1, 2)
    cache.close()
    again, _ = await open_cache(scratch / "c", 1 << 30)
    assert again.size == cache.size > 0
    for chunks in (first, second):
        got = await again.read([c.id for c in chunks])
        assert [(c.codec, c.raw_length, bytes(c.data)) for c in got] == \
            [(c.codec, c.raw_length, bytes(c.data)) for c in chunks]
    [third] = await segments(again, 3)
    assert len([p for p in (scratch / "c").iterdir() if p.name.startswith("seg-")]) == 3
    assert all(again.has([c.id for c in first + second + third]))


async def test_a_segment_torn_by_a_crash_is_removed_when_the_cache_opens(scratch: Path
                                                                       ) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    kept, torn = await segments(cache, 1, 2)
    files = sorted(p for p in (scratch / "c").iterdir() if p.name != "lock")
    with files[1].open("r+b") as f:
        f.truncate(f.seek(0, 2) - 7)  # the crash came before the trailer was whole
    cache.close()
    again, _ = await open_cache(scratch / "c", 1 << 30)
    assert all(again.has([c.id for c in kept]))
    assert not any(again.has([c.id for c in torn]))
    assert sorted(p for p in (scratch / "c").iterdir() if p.name != "lock") == files[:1]
    assert again.size == sum(len(c.data) for c in kept)


async def test_a_folder_in_use_by_another_cache_is_refused(scratch: Path) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    [chunks] = await segments(cache, 1)
    with pytest.raises(InvalidArgument, match="in use"):
        await open_cache(scratch / "c", 1 << 30)
    assert all(cache.has([c.id for c in chunks]))  # and the first one untouched
    cache.close()
    again, _ = await open_cache(scratch / "c", 1 << 30)
    assert all(again.has([c.id for c in chunks]))


async def test_a_reopened_cache_still_knows_which_blob_its_chunks_landed_for(scratch: Path
                                                                          ) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(300_000, seed=1))
    count = len(chunks) + 5
    await cache.write(chunks, blob=("sha256:x", count, 3))
    bits = cache.mark("sha256:x", count, 3, [c.id for c in chunks])
    [other] = await segments(cache, 2)  # landed for no blob in particular
    cache.close()
    again, dropped = await open_cache(scratch / "c", 1 << 30)
    assert again.holdings == {("sha256:x", count): bits}
    # Dropping the segment withdraws those marks, as before the restart.
    again.limit = sum(len(c.data) for c in other)
    await again.evict()
    assert again.holdings == {}
    assert dropped == [Holding("sha256:x", count, dropped=bits)]


async def test_a_cache_reopened_with_a_smaller_limit_evicts_the_oldest(scratch: Path
                                                                      ) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    old, new = await segments(cache, 1, 2)
    cache.close()
    again, _ = await open_cache(scratch / "c", sum(len(c.data) for c in new))
    assert not any(again.has([c.id for c in old]))
    assert all(again.has([c.id for c in new]))


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


async def test_a_peer_is_sent_what_landed_before_the_rest_lands(scratch: Path) -> None:
    """Cut-through relaying: the chunks of a piece that have landed go out at once."""
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(400_000, seed=5))
    assert len(chunks) >= 4
    half = len(chunks) // 2
    ids = [c.id for c in chunks]
    cache.expect(ids)
    await cache.write(chunks[:half])
    runs = cache.chunk_runs(ids)
    first = await asyncio.wait_for(anext(runs), 5)
    assert [c.id for c in first] == ids[:half]
    rest = asyncio.create_task(anext(runs))
    await asyncio.sleep(0.05)
    assert not rest.done()  # waits for the second half to land
    await cache.write(chunks[half:])
    assert [c.id for c in await asyncio.wait_for(rest, 5)] == ids[half:]
    with pytest.raises(StopAsyncIteration):
        await anext(runs)


async def test_runs_from_a_store_are_cut_by_size() -> None:
    chunks = encode(random_bytes(600_000, seed=6))

    class Store:
        async def get_chunks(self, ids: Sequence[bytes]) -> AsyncIterator[StoredChunk]:
            for c in chunks:
                yield c

    runs = [run async for run in Runs(Store(), 100_000).chunk_runs([c.id for c in chunks])]
    assert [c.id for run in runs for c in run] == [c.id for c in chunks]
    assert len(runs) > 1
    for run in runs[:-1]:
        assert sum(len(c.data) for c in run) >= 100_000
        assert sum(len(c.data) for c in run[:-1]) < 100_000


async def test_a_chunk_that_never_lands_is_not_found(scratch: Path) -> None:
    cache, _ = await open_cache(scratch / "c", 1 << 30)
    chunks = encode(random_bytes(50_000, seed=4))
    ids = [c.id for c in chunks]
    cache.expect(ids)
    cache.settle(ids)  # the fetch failed

    with pytest.raises(NotFound):
        async for _ in cache.chunk_runs(ids):
            pass
