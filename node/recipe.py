"""Recipes: the ordered chunks that make up a blob, and byte-range lookup over them.

A recipe is stored and sent packed (32-byte chunk id + 4-byte big-endian raw length per
entry). Offsets are not stored: they are a prefix sum, rebuilt on load, which keeps the
index small and makes a corrupted length impossible to disagree with an offset.
"""

from __future__ import annotations

import bisect
import struct
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
    """An immutable list of (chunk id, length) with a prefix sum for range lookups."""

    __slots__ = ("_ends", "ids", "lengths")

    def __init__(self, ids: list[bytes], lengths: list[int]) -> None:
        if len(ids) != len(lengths):
            raise InvalidArgument("recipe ids and lengths differ in count")
        self.ids = ids
        self.lengths = lengths
        self._ends = list(accumulate(lengths))

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
        ids: list[bytes] = []
        lengths: list[int] = []
        for chunk_id, length in ENTRY.iter_unpack(packed):
            if length == 0:
                raise InvalidArgument("recipe has an empty chunk")
            ids.append(chunk_id)
            lengths.append(length)
        return cls(ids, lengths)

    @classmethod
    def concat(cls, parts: Iterable[Recipe]) -> Recipe:
        ids: list[bytes] = []
        lengths: list[int] = []
        for part in parts:
            ids.extend(part.ids)
            lengths.extend(part.lengths)
        return cls(ids, lengths)

    def pack(self) -> bytes:
        return b"".join(ENTRY.pack(i, n) for i, n in zip(self.ids, self.lengths, strict=True))

    @property
    def size(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Recipe) and self.ids == other.ids and self.lengths == other.lengths
        )

    def __hash__(self) -> int:
        return hash(tuple(self.ids))

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
        while index < len(self.ids):
            chunk_end = self._ends[index]
            chunk_start = chunk_end - self.lengths[index]
            if chunk_start >= end:
                break
            yield ChunkSlice(
                chunk_id=self.ids[index],
                length=self.lengths[index],
                start=max(offset, chunk_start) - chunk_start,
                end=min(end, chunk_end) - chunk_start,
            )
            index += 1
