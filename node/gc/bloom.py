"""A Bloom filter of chunk ids: what a cluster's collection marks chunks in use with.

An exact set of a million chunk ids costs about 100 MB in Python and 32 MB on the wire
to every member; this filter costs 1.2 MB at 1 % false positives (9.6 bits a chunk, 7
probes). A false positive only keeps a garbage chunk until a later run (each run sizes
the filter afresh, so the same chunk is unlikely to hit again); a chunk in use is always
found, so the filter can never make a sweep delete live data.

Chunk ids are SHA-256 digests, already uniformly spread: the probes are slices of the id
itself, with no hashing of our own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

BITS_PER_ITEM = 9.6   # 1 % false positives with 7 probes
HASHES = 7
MIN_BITS = 1 << 13
PIECE = 1 << 20       # bytes per message when a filter crosses the network


def size_for(items: int) -> int:
    """Bits for `items` ids at the target rate, rounded up to whole bytes."""
    bits = max(MIN_BITS, math.ceil(items * BITS_PER_ITEM))
    return (bits + 7) // 8 * 8


class ChunkFilter:
    def __init__(self, bits: int, hashes: int = HASHES, data: bytes | None = None) -> None:
        if bits <= 0 or bits % 8 or not 1 <= hashes <= 16:
            raise ValueError(f"a filter needs whole bytes of bits and 1 to 16 hashes, not "
                             f"{bits} bits and {hashes} hashes")
        if data is not None and len(data) != bits // 8:
            raise ValueError(f"a filter of {bits} bits holds {bits // 8} bytes, "
                             f"not {len(data)}")
        self.bits = bits
        self.hashes = hashes
        self._data = bytearray(data) if data is not None else bytearray(bits // 8)

    def _probes(self, chunk_id: bytes) -> Iterator[int]:
        # Two 64-bit halves combined (Kirsch-Mitzenmacher) give any number of probes.
        h1 = int.from_bytes(chunk_id[:8], "little")
        h2 = int.from_bytes(chunk_id[8:16], "little") | 1
        for i in range(self.hashes):
            yield (h1 + i * h2) % self.bits

    def add(self, chunk_id: bytes) -> None:
        for bit in self._probes(chunk_id):
            self._data[bit >> 3] |= 1 << (bit & 7)

    def update(self, ids: Iterable[bytes]) -> None:
        for chunk_id in ids:
            self.add(chunk_id)

    def __contains__(self, chunk_id: object) -> bool:
        if not isinstance(chunk_id, bytes):
            return False
        return all(self._data[bit >> 3] & (1 << (bit & 7)) for bit in self._probes(chunk_id))

    def merge(self, other: ChunkFilter) -> None:
        """Add every id of `other` (built with the same size and probes)."""
        if (other.bits, other.hashes) != (self.bits, self.hashes):
            raise ValueError("filters of different shapes cannot be merged")
        merged = int.from_bytes(self._data, "little") | int.from_bytes(other._data, "little")
        self._data = bytearray(merged.to_bytes(len(self._data), "little"))

    def pieces(self) -> Iterator[bytes]:
        for start in range(0, len(self._data), PIECE):
            yield bytes(self._data[start:start + PIECE])

    @classmethod
    def join(cls, bits: int, hashes: int, pieces: Iterable[bytes]) -> ChunkFilter:
        return cls(bits, hashes, b"".join(pieces))
