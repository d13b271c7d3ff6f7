"""Content-defined chunking: boundaries follow content, not offsets or feed sizes."""

from __future__ import annotations

import random

import pytest
from nodetest import cut, random_bytes, text_bytes

from node.chunking import AVG_CHUNK, MAX_CHUNK, MIN_CHUNK, StreamChunker, chunk_id

SIZE = 4 << 20


def ids(chunks: list[bytes]) -> list[bytes]:
    return [chunk_id(c) for c in chunks]


def test_chunks_reassemble_and_respect_size_bounds() -> None:
    data = random_bytes(SIZE, seed=1)
    chunks = cut(data)
    assert b"".join(chunks) == data
    assert len(chunks) > SIZE // MAX_CHUNK
    assert all(MIN_CHUNK <= len(c) <= MAX_CHUNK for c in chunks[:-1])
    assert 0 < len(chunks[-1]) <= MAX_CHUNK


def test_max_size_cuts_data_without_content_boundaries() -> None:
    data = bytes(1 << 20)  # zeros: the rolling hash never finds a cut
    chunks = cut(data)
    assert b"".join(chunks) == data
    assert all(len(c) == MAX_CHUNK for c in chunks[:-1])


@pytest.mark.parametrize("insert_at", [0, 1000, 70_000])
def test_insertion_near_the_start_changes_only_the_chunks_around_it(insert_at: int) -> None:
    data = random_bytes(SIZE, seed=2)
    edited = data[:insert_at] + b"inserted bytes!" * 7 + data[insert_at:]
    before, after = ids(cut(data)), ids(cut(edited))
    after_set = set(after)
    changed = [i for i, cid in enumerate(before) if cid not in after_set]
    assert 1 <= len(changed) <= 3
    # The changed chunks are the ones at the edit: the chunker re-synchronises right after.
    starts = [0]
    for chunk in cut(data):
        starts.append(starts[-1] + len(chunk))
    assert starts[changed[0]] <= insert_at < starts[changed[-1] + 1] + MAX_CHUNK
    unchanged_tail = before[changed[-1] + 1:]
    assert after[len(after) - len(unchanged_tail):] == unchanged_tail
    assert len(unchanged_tail) > len(before) - 5


def test_removal_in_the_middle_keeps_both_ends() -> None:
    data = random_bytes(SIZE, seed=3)
    middle = SIZE // 2
    edited = data[:middle] + data[middle + 5000:]
    before, after = ids(cut(data)), set(ids(cut(edited)))
    lost = [i for i in before if i not in after]
    assert 1 <= len(lost) <= 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_chunker_is_independent_of_piece_sizes(seed: int) -> None:
    rng = random.Random(seed)
    data = random_bytes(3 << 20, seed=seed) + text_bytes(1 << 20, seed=seed)
    whole = cut(data)
    chunker = StreamChunker()
    got: list[bytes | memoryview] = []
    position = 0
    sizes = [1, 7, 4096, 65_537, 1 << 20, (1 << 20) + 3, 3 << 20]
    while position < len(data):
        size = rng.choice(sizes)
        got += chunker.feed(data[position:position + size])
        position = min(position + size, len(data))
        assert sum(map(len, got)) + chunker.pending == position
    got += chunker.finish()
    assert got == whole
    assert chunker.pending == 0
    assert chunker.finish() == []


def test_stream_chunker_is_reusable_after_finish() -> None:
    chunker = StreamChunker()
    a, b = random_bytes(2 << 20, seed=5), random_bytes(1 << 20, seed=6)
    first = chunker.feed(a) + chunker.finish()
    second = chunker.feed(b) + chunker.finish()
    assert first == cut(a)
    assert second == cut(b)


def test_small_input_is_one_chunk() -> None:
    assert cut(b"tiny") == [b"tiny"]
    assert cut(b"") == []


def _tar(files: dict[str, bytes], mtime: int) -> bytes:
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _chunks_of(data: bytes, pieces: list[int] | None = None) -> list[bytes]:
    chunker = StreamChunker()
    out: list[bytes] = []
    at = 0
    for size in pieces or [len(data)]:
        out += [bytes(c) for c in chunker.feed(data[at:at + size])]
        at += size
    out += [bytes(c) for c in chunker.feed(data[at:])]
    out += [bytes(c) for c in chunker.finish()]
    assert b"".join(out) == data
    return out


def _data_ranges(layer: bytes) -> dict[str, tuple[int, int]]:
    """Each member's data as [start, end) in the layer, padding to 512 included."""
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {m.name: (m.offset_data, m.offset_data + -(-m.size // 512) * 512)
                for m in tar.getmembers()}


def test_tar_members_start_chunks_so_unchanged_files_dedup_whatever_precedes_them() -> None:
    rng = random.Random(7)
    shared = {f"lib/mod{i}.py": rng.randbytes(rng.randrange(100, 300_000)) for i in range(12)}
    old = _tar({"a/changed.bin": rng.randbytes(777_777), **shared}, mtime=1)
    new = _tar({"a/changed.bin": rng.randbytes(123_456), "a/added.txt": b"x" * 5000,
                **shared}, mtime=2)
    old_ids = {chunk_id(c) for c in _chunks_of(old)}
    spans = []
    at = 0
    for chunk in _chunks_of(new):
        spans.append((at, at + len(chunk), chunk_id(chunk)))
        at += len(chunk)
    for name, (start, end) in _data_ranges(new).items():
        if name not in shared:
            continue
        inside = [(s, e, cid) for s, e, cid in spans if start <= s < end]
        # The file's data starts and ends on chunk boundaries, and every one of its chunks
        # is also a chunk of the old layer, where other files preceded it.
        assert inside[0][0] == start and inside[-1][1] == end, name
        assert all(cid in old_ids for _, _, cid in inside), name


def test_tar_chunking_does_not_depend_on_how_the_stream_arrives() -> None:
    rng = random.Random(8)
    layer = _tar({f"f{i}": rng.randbytes(rng.randrange(0, 400_000)) for i in range(30)}, 0)
    whole = _chunks_of(layer)
    pieces = [rng.randrange(1, 900_000) for _ in range(40)]
    assert _chunks_of(layer, pieces) == whole
    assert _chunks_of(layer, [511, 1, 512, 1 << 20, 3]) == whole


def test_a_stream_that_is_not_a_tar_is_plain_cdc() -> None:
    data = random.Random(9).randbytes(3 << 20)
    plain = StreamChunker(tar_aware=False)
    expected = [bytes(c) for c in plain.feed(data)] + [bytes(c) for c in plain.finish()]
    assert _chunks_of(data) == expected


def test_tar_chunks_are_fastcdc_of_each_header_and_each_member_data() -> None:
    """An independent reference: tarfile's own member offsets, FastCDC within each piece
    (small files and headers included, which the chunker answers without FastCDC)."""
    import io
    import tarfile

    from pyfastcdc.cy import FastCDC

    rng = random.Random(10)
    edges = [0, 1, 511, 512, 513, MIN_CHUNK - 1, MIN_CHUNK, MIN_CHUNK + 1, 200_000]

    def size() -> int:  # sizes at the edges, and a quarter cut by FastCDC near the minimum
        return rng.choice(edges) if rng.random() < 0.75 else rng.randrange(4097, 40_000)

    layer = _tar({f"f{i}": rng.randbytes(size()) for i in range(300)}, 0)
    pieces = []
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        for member in tar.getmembers():
            pieces.append((member.offset, member.offset_data))
            padded = -(-member.size // 512) * 512
            if padded:
                pieces.append((member.offset_data, member.offset_data + padded))
    pieces.append((pieces[-1][1], len(layer)))  # the end-of-archive blocks
    cdc = FastCDC(AVG_CHUNK, min_size=MIN_CHUNK, max_size=MAX_CHUNK)
    expected = [bytes(c.data) for start, end in pieces
                for c in cdc.cut_buf(memoryview(layer)[start:end])]
    assert _chunks_of(layer) == expected


@pytest.mark.parametrize("block", [bytes(512), b"\xff" * 512, random_bytes(512, seed=3),
                                   random_bytes(148, seed=4), b""])
def test_header_byte_sums_are_exact(block: bytes) -> None:
    from node.chunking import _byte_sum

    assert _byte_sum(block) == sum(block)
