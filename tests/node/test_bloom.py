"""The chunk filter of a cluster's collection: no chunk in use is ever missed."""

from __future__ import annotations

import hashlib

import pytest

from node.gc.bloom import HASHES, ChunkFilter, size_for


def ids(start: int, n: int) -> list[bytes]:
    return [hashlib.sha256(str(i).encode()).digest() for i in range(start, start + n)]


def test_every_id_added_is_found_and_few_others_are() -> None:
    used = ChunkFilter(size_for(20_000))
    used.update(ids(0, 20_000))
    assert all(i in used for i in ids(0, 20_000))
    false = sum(i in used for i in ids(100_000, 20_000))
    assert false < 20_000 * 0.02


def test_merged_and_rejoined_filters_keep_every_id() -> None:
    bits = size_for(2_000)
    a, b = ChunkFilter(bits), ChunkFilter(bits)
    a.update(ids(0, 1000))
    b.update(ids(1000, 1000))
    a.merge(b)
    again = ChunkFilter.join(bits, HASHES, list(a.pieces()))
    assert all(i in again for i in ids(0, 2000))


def test_filters_of_different_shapes_do_not_mix() -> None:
    with pytest.raises(ValueError):
        ChunkFilter(size_for(10)).merge(ChunkFilter(size_for(10) * 2))
    with pytest.raises(ValueError):
        ChunkFilter(8 * 1024, HASHES, b"short")
