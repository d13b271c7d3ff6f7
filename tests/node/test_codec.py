"""Chunk encoding: zstd when it pays, raw when it does not, and verified decoding."""

from __future__ import annotations

import dataclasses

import pytest
from nodetest import random_bytes, text_bytes

from node.api import Codec, StoredChunk
from node.chunking import chunk_id
from node.codec import SKIP_AFTER_MISSES, SKIP_CHUNKS, CompressionProbe, decode
from node.errors import DataLoss, InvalidArgument


def test_compressible_chunk_is_stored_zstd() -> None:
    raw = text_bytes(16 * 1024)
    chunk = CompressionProbe().encode(raw)
    assert chunk.codec == Codec.ZSTD
    assert len(chunk.data) < len(raw) // 2
    assert chunk.id == chunk_id(raw) and chunk.raw_length == len(raw)
    assert decode(chunk) == raw


def test_random_chunk_is_stored_raw() -> None:
    raw = random_bytes(16 * 1024)
    chunk = CompressionProbe().encode(raw)
    assert chunk.codec == Codec.RAW
    assert chunk.data == raw
    assert decode(chunk) == raw


def test_probe_stops_trying_on_an_incompressible_stream_then_looks_again() -> None:
    probe = CompressionProbe()
    noise = [random_bytes(4096, seed=i) for i in range(SKIP_AFTER_MISSES)]
    for raw in noise:
        assert probe.encode(raw).codec == Codec.RAW
    # Now skipping: even compressible chunks are kept raw, without a compression attempt.
    text = text_bytes(8192)
    skipped = [probe.encode(text) for _ in range(SKIP_CHUNKS)]
    assert all(c.codec == Codec.RAW and c.data == text for c in skipped)
    assert all(decode(c) == text for c in skipped[:3])
    # After the pause it tries again and keeps compressing what compresses.
    assert probe.encode(text).codec == Codec.ZSTD
    assert probe.encode(text).codec == Codec.ZSTD


def test_a_hit_resets_the_miss_count() -> None:
    probe = CompressionProbe()
    text = text_bytes(8192)
    for i in range(3 * SKIP_AFTER_MISSES):
        raw = text if i % (SKIP_AFTER_MISSES - 1) == 0 else random_bytes(4096, seed=i)
        chunk = probe.encode(raw)
        if raw is text:
            assert chunk.codec == Codec.ZSTD


@pytest.mark.parametrize("source", ["text", "random"])
def test_decode_detects_a_tampered_chunk(source: str) -> None:
    raw = text_bytes(16384) if source == "text" else random_bytes(16384)
    chunk = CompressionProbe().encode(raw)
    data = bytearray(chunk.data)
    data[len(data) // 2] ^= 0x01
    with pytest.raises(DataLoss):
        decode(dataclasses.replace(chunk, data=bytes(data)))


def test_decode_detects_wrong_length_and_wrong_id() -> None:
    raw = text_bytes(16384)
    chunk = CompressionProbe().encode(raw)
    with pytest.raises(DataLoss):
        decode(dataclasses.replace(chunk, raw_length=len(raw) - 1))
    with pytest.raises(DataLoss):
        decode(dataclasses.replace(chunk, raw_length=len(raw) + 1))
    with pytest.raises(DataLoss):
        decode(dataclasses.replace(chunk, id=chunk_id(b"other")))
    with pytest.raises(DataLoss):
        decode(StoredChunk(chunk.id, Codec.ZSTD, len(raw), b"not zstd at all"))


def test_decode_rejects_an_unknown_codec() -> None:
    raw = b"abc"
    with pytest.raises(InvalidArgument):
        decode(StoredChunk(chunk_id(raw), 7, 3, raw))  # type: ignore[arg-type]


def test_decode_does_not_inflate_a_chunk_past_its_declared_length() -> None:
    import tracemalloc

    import zstandard

    declared = 256 << 20
    writer = zstandard.ZstdCompressor(level=1).compressobj(size=declared)
    zeros = bytes(1 << 20)
    bomb = b"".join(writer.compress(zeros) for _ in range(declared >> 20)) + writer.flush()
    assert len(bomb) < 64 << 10
    tracemalloc.start()
    try:
        with pytest.raises(DataLoss):
            decode(StoredChunk(chunk_id(b""), Codec.ZSTD, 0, bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"decoding a {len(bomb)}-byte chunk allocated {peak >> 20} MiB"
