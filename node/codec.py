"""Chunk encoding at rest and on the wire: zstd when it saves a useful fraction, raw
otherwise.

Gzipped layers are incompressible, and trying zstd on every one of their chunks would
burn a core for nothing; `CompressionProbe` notices a stream that does not compress and
stops trying for a while, then looks again (a tar can hold both kinds of file).
"""

from __future__ import annotations

import threading

import xxhash
import zstandard

from node.api import Codec, StoredChunk
from node.chunking import chunk_id
from node.errors import DataLoss, InvalidArgument

ZSTD_LEVEL = 3
# Keep the compressed form only when it is at most this fraction of the raw size.
WORTH_KEEPING = 0.9
# After this many chunks in a row that did not compress, skip that many before the next try.
SKIP_AFTER_MISSES = 8
SKIP_CHUNKS = 256
# No chunk is larger than the chunker's maximum; 4 MiB leaves room for other chunkers.
MAX_RAW_LENGTH = 4 << 20

_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    # zstandard's (de)compressors are not thread-safe: one per thread.
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True)
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


class CompressionProbe:
    """Decides, chunk by chunk of one stream, whether compression is worth trying."""

    def __init__(self) -> None:
        self._misses = 0
        self._skip = 0

    def encode(self, raw: bytes | memoryview) -> StoredChunk:
        return self.compress(StoredChunk(chunk_id(raw), Codec.RAW, len(raw), raw))

    def compress(self, chunk: StoredChunk) -> StoredChunk:
        """`chunk` (raw) as it should be stored and sent: zstd when that is worth it."""
        if self._skip:
            self._skip -= 1
            return chunk
        packed = _compressor().compress(chunk.data)
        if len(packed) <= len(chunk.data) * WORTH_KEEPING:
            self._misses = 0
            return StoredChunk(chunk.id, Codec.ZSTD, chunk.raw_length, packed)
        self._misses += 1
        if self._misses >= SKIP_AFTER_MISSES:
            self._misses = 0
            self._skip = SKIP_CHUNKS
        return chunk


def checksum(stored: bytes | memoryview) -> int:
    """The checksum a node keeps of each chunk's stored bytes and checks on every read.

    Chunk ids (SHA-256) authenticate content between nodes and peers, who verify them on
    receipt. On its own disk a node only needs to detect bytes that changed since it
    wrote them (bit rot, torn writes, a truncated pack), and XXH3-64 does that at 7 GB/s
    against SHA-256's 1.3: verifying every read with SHA-256 would cap a pull at about
    1 GB/s of one core. Scrubbing re-hashes with SHA-256.
    """
    return int(xxhash.xxh3_64_intdigest(stored))


def decode_stored(chunk: StoredChunk) -> bytes | memoryview:
    """The raw bytes of a chunk read back from this node's own packs, whose stored bytes
    the caller has checked: zstd still checks its frame (size and content checksum)."""
    if chunk.codec == Codec.RAW:
        return chunk.data
    return _inflate(chunk)


def decode(chunk: StoredChunk) -> bytes | memoryview:
    """The raw bytes of `chunk`, checked against its id. DataLoss when they differ."""
    if chunk.codec == Codec.RAW:
        raw: bytes | memoryview = chunk.data
    elif chunk.codec == Codec.ZSTD:
        raw = _inflate(chunk)
    else:
        raise InvalidArgument(f"unknown codec {chunk.codec!r}")
    if len(raw) != chunk.raw_length or chunk_id(raw) != chunk.id:
        raise DataLoss(f"chunk {chunk.id.hex()} does not match its id")
    return raw


def _inflate(chunk: StoredChunk) -> bytes:
    # A frame must say its size, and say the one claimed: zstd's max_output_size of 0
    # means unbounded, and a tiny frame can expand to gigabytes.
    if not 0 < chunk.raw_length <= MAX_RAW_LENGTH:
        raise DataLoss(f"chunk {chunk.id.hex()} claims {chunk.raw_length} raw bytes")
    try:
        declared = zstandard.frame_content_size(chunk.data)
    except zstandard.ZstdError as exc:
        raise DataLoss(f"chunk {chunk.id.hex()} is not a zstd frame: {exc}") from None
    if declared != chunk.raw_length:
        raise DataLoss(f"chunk {chunk.id.hex()} frame holds {declared} bytes, "
                       f"not {chunk.raw_length}")
    try:
        raw: bytes = _decompressor().decompress(chunk.data, max_output_size=chunk.raw_length)
    except zstandard.ZstdError as exc:
        raise DataLoss(f"chunk {chunk.id.hex()} does not decompress: {exc}") from None
    if len(raw) != chunk.raw_length:
        raise DataLoss(f"chunk {chunk.id.hex()} decompresses to {len(raw)} bytes")
    return raw
