"""Chunks cut into consecutive groups of about a size: gRPC messages of ~1 MiB, runs an
owner sends, put streams between members. One loop, in its sync and async shapes."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator

from node.api import StoredChunk


def by_size(chunks: Iterable[StoredChunk], limit: int) -> Iterator[list[StoredChunk]]:
    """`chunks` in order, in groups that end once they reach `limit` stored bytes."""
    group: list[StoredChunk] = []
    size = 0
    for chunk in chunks:
        group.append(chunk)
        size += len(chunk.data)
        if size >= limit:
            yield group
            group, size = [], 0
    if group:
        yield group


async def by_size_async(chunks: AsyncIterable[StoredChunk], limit: int
                        ) -> AsyncIterator[list[StoredChunk]]:
    """`by_size` over chunks that arrive one by one: a group leaves as soon as it is full."""
    group: list[StoredChunk] = []
    size = 0
    async for chunk in chunks:
        group.append(chunk)
        size += len(chunk.data)
        if size >= limit:
            yield group
            group, size = [], 0
    if group:
        yield group
