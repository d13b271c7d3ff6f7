"""Recipes: byte ranges mapped to chunk slices, and the packed form."""

from __future__ import annotations

import hashlib
import random

import pytest

from node.errors import InvalidArgument, OutOfRange
from node.recipe import ENTRY, ChunkSlice, Recipe

LENGTHS = [5, 1, 17, 4096, 3, 100]


def make(lengths: list[int]) -> tuple[Recipe, bytes]:
    """A recipe over fake chunks whose bytes are known, and the blob they make."""
    ids = [hashlib.sha256(str(i).encode()).digest() for i in range(len(lengths))]
    blob = b"".join(bytes([i]) * n for i, n in enumerate(lengths))
    return Recipe(ids, lengths), blob


def apply(recipe: Recipe, slices: list[ChunkSlice]) -> bytes:
    index = {cid: i for i, cid in enumerate(recipe.ids)}
    out = bytearray()
    for s in slices:
        i = index[s.chunk_id]
        assert s.length == recipe.lengths[i]
        assert 0 <= s.start < s.end <= s.length
        out += bytes([i]) * (s.end - s.start)
    return bytes(out)


def test_every_range_maps_to_exactly_its_bytes() -> None:
    recipe, blob = make(LENGTHS)
    size = len(blob)
    assert recipe.size == size
    offsets = sorted({0, 1, 4, 5, 6, 22, 23, size - 1, size, *random.Random(0).sample(
        range(size), 40)})
    for offset in offsets:
        for length in (None, 0, 1, 2, 16, 17, 18, 4095, 4096, 4097, size - offset):
            if length is not None and offset + length > size:
                continue
            slices = list(recipe.slices(offset, length))
            end = size if length is None else offset + length
            assert apply(recipe, slices) == blob[offset:end], (offset, length)
            # Only overlapping chunks are named, and none twice.
            assert all(s.end > s.start for s in slices)
            assert len({s.chunk_id for s in slices}) == len(slices)


def test_range_touching_only_one_chunk() -> None:
    recipe, _ = make(LENGTHS)
    [only] = recipe.slices(23, 4096)
    assert only == ChunkSlice(recipe.ids[3], 4096, 0, 4096)
    [inner] = recipe.slices(24, 10)
    assert (inner.chunk_id, inner.start, inner.end) == (recipe.ids[3], 1, 11)


@pytest.mark.parametrize(("offset", "length"), [
    (-1, None), (-1, 1), (4223, None), (4222, 2), (0, 4223), (10, -1), (4300, 0),
])
def test_out_of_range(offset: int, length: int | None) -> None:
    recipe, blob = make(LENGTHS)
    assert len(blob) == 4222
    with pytest.raises(OutOfRange):
        list(recipe.slices(offset, length))


def test_empty_range_at_the_end_and_empty_recipe() -> None:
    recipe, blob = make(LENGTHS)
    assert list(recipe.slices(len(blob))) == []
    assert list(recipe.slices(len(blob), 0)) == []
    empty = Recipe([], [])
    assert empty.size == 0 and len(empty) == 0
    assert list(empty.slices(0)) == []
    with pytest.raises(OutOfRange):
        list(empty.slices(1))


def test_pack_unpack_round_trip() -> None:
    recipe, _ = make(LENGTHS)
    packed = recipe.pack()
    assert len(packed) == ENTRY.size * len(LENGTHS)
    again = Recipe.unpack(packed)
    assert again == recipe
    assert again.lengths == LENGTHS and again.size == recipe.size
    assert hash(again) == hash(recipe)
    assert Recipe.unpack(b"") == Recipe([], [])


def test_concat_and_from_entries() -> None:
    recipe, _ = make(LENGTHS)
    head = Recipe(recipe.ids[:2], recipe.lengths[:2])
    tail = Recipe.from_entries(zip(recipe.ids[2:], recipe.lengths[2:], strict=True))
    assert Recipe.concat([head, tail]) == recipe


@pytest.mark.parametrize("cut_by", [1, 35, 37])
def test_unpack_rejects_a_partial_entry(cut_by: int) -> None:
    packed, _ = make(LENGTHS)
    data = packed.pack()
    with pytest.raises(InvalidArgument):
        Recipe.unpack(data[:-cut_by] if cut_by < len(data) else data + b"x")


def test_unpack_rejects_an_empty_chunk_and_mismatched_lists() -> None:
    with pytest.raises(InvalidArgument):
        Recipe.unpack(ENTRY.pack(bytes(32), 0))
    with pytest.raises(InvalidArgument):
        Recipe([bytes(32)], [])
