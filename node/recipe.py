"""Recipes: the ordered chunks that make up a blob, and byte-range lookup over them.

A recipe is stored and sent packed (32-byte chunk id + 4-byte big-endian raw length per
entry). Offsets are not stored: they are a prefix sum, rebuilt on load, which keeps the
index small and makes a corrupted length impossible to disagree with an offset.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import accumulate

from node.errors import InvalidArgument, OutOfRange

CHUNK_ID_SIZE = 32
ENTRY = struct.Struct(">32sI")


@dataclass(frozen=True, slots=True)
class ChunkSlice:
    """Part of one chunk needed for a read: bytes [start, end) of chunk `chunk_id`."""

    chunk_id: bytes
    length: int
    start: int
    end: int


class Recipe:
    """An immutable list of (chunk id, length), kept packed, with a prefix sum for range
    lookups.

    A 4 GiB layer has about 200,000 chunks: as Python lists that is some 25 MB per open
    recipe, packed it is 7 MB plus 1.6 MB of offsets, so memory stays near flat however
    large the blob.
    """

    __slots__ = ("_ends", "_packed")

    _packed: bytes
    _ends: array[int]

    def __init__(self, ids: list[bytes], lengths: list[int]) -> None:
        if len(ids) != len(lengths):
            raise InvalidArgument("recipe ids and lengths differ in count")
        try:
            packed = b"".join(ENTRY.pack(i, n) for i, n in zip(ids, lengths, strict=True))
        except struct.error as exc:
            raise InvalidArgument(f"bad recipe entry: {exc}") from None
        self._set(packed, lengths)

    def _set(self, packed: bytes, lengths: Iterable[int]) -> None:
        self._packed = packed
        self._ends = array("Q", accumulate(lengths))

    @classmethod
    def _of(cls, packed: bytes, lengths: Iterable[int]) -> Recipe:
        recipe = cls.__new__(cls)
        recipe._set(packed, lengths)
        return recipe

    @classmethod
    def from_entries(cls, entries: Iterable[tuple[bytes, int]]) -> Recipe:
        ids: list[bytes] = []
        lengths: list[int] = []
        for chunk_id, length in entries:
            ids.append(chunk_id)
            lengths.append(length)
        return cls(ids, lengths)

    @classmethod
    def unpack(cls, packed: bytes) -> Recipe:
        if len(packed) % ENTRY.size:
            raise InvalidArgument(f"recipe of {len(packed)} bytes is not a whole number of entries")
        lengths = [length for _, length in ENTRY.iter_unpack(packed)]
        if 0 in lengths:
            raise InvalidArgument("recipe has an empty chunk")
        return cls._of(bytes(packed), lengths)

    @classmethod
    def concat(cls, parts: Iterable[Recipe]) -> Recipe:
        parts = list(parts)
        return cls._of(b"".join(p._packed for p in parts),
                       (n for p in parts for _, n in p.entries()))

    def pack(self) -> bytes:
        return self._packed

    def entries(self) -> Iterator[tuple[bytes, int]]:
        """(chunk id, length) in order."""
        return ENTRY.iter_unpack(self._packed)

    @property
    def ids(self) -> list[bytes]:
        return [i for i, _ in self.entries()]

    @property
    def lengths(self) -> list[int]:
        return [n for _, n in self.entries()]

    @property
    def size(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __len__(self) -> int:
        return len(self._ends)

    def __bool__(self) -> bool:
        return bool(self._ends)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Recipe) and self._packed == other._packed

    def __hash__(self) -> int:
        return hash(self._packed)

    def check_range(self, offset: int, length: int | None = None) -> int:
        """The end of [offset, offset + length); OutOfRange when it is not in the blob."""
        size = self.size
        end = size if length is None else offset + length
        if offset < 0 or end < offset or end > size:
            raise OutOfRange(f"range {offset}-{end} outside blob of {size} bytes")
        return end

    def slices(self, offset: int, length: int | None = None) -> Iterator[ChunkSlice]:
        """The chunk slices covering bytes [offset, offset + length) of the blob.

        Only the chunks that overlap the range are named, so a range read never touches
        the others. `length=None` reads to the end.
        """
        end = self.check_range(offset, length)
        if offset == end:
            return
        index = bisect.bisect_right(self._ends, offset)
        count = len(self._ends)
        while index < count:
            chunk_end = self._ends[index]
            chunk_id, chunk_length = ENTRY.unpack_from(self._packed, index * ENTRY.size)
            chunk_start = chunk_end - chunk_length
            if chunk_start >= end:
                break
            yield ChunkSlice(
                chunk_id=chunk_id,
                length=chunk_length,
                start=max(offset, chunk_start) - chunk_start,
                end=min(end, chunk_end) - chunk_start,
            )
            index += 1
