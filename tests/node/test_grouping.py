"""Chunks cut into groups of about a size, sync and async alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

from node.api import Codec, StoredChunk
from node.grouping import by_size, by_size_async


def chunks(sizes: list[int]) -> list[StoredChunk]:
    return [StoredChunk(i.to_bytes(32, "big"), Codec.RAW, n, b"x" * n)
            for i, n in enumerate(sizes)]


async def arriving(items: list[StoredChunk]) -> AsyncIterator[StoredChunk]:
    for item in items:
        yield item


async def test_a_group_ends_once_it_reaches_the_limit() -> None:
    items = chunks([4, 4, 4, 9, 1, 2])
    groups = [[len(c.data) for c in g] for g in by_size(items, 8)]
    assert groups == [[4, 4], [4, 9], [1, 2]]
    assert [g async for g in by_size_async(arriving(items), 8)] == list(by_size(items, 8))
    assert list(by_size([], 8)) == []
    assert [[len(c.data) for c in g] for g in by_size(items, 1)] == [[n] for n in
                                                                   [4, 4, 4, 9, 1, 2]]
