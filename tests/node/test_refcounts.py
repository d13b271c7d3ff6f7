"""Chunk reference counts kept in step with blobs and upload sessions (LocalNode)."""

from __future__ import annotations

from pathlib import Path

import pytest
from nodetest import encode, one_batch, random_bytes, recipe_of, sha256, store_blob

from node.chunkstore import ChunkEntry
from node.errors import InvalidArgument, NotFound
from node.local import LocalNode
from node.recipe import Recipe


def refs(node: LocalNode, ids: list[bytes]) -> list[int]:
    found = node.chunks.entries(ids)
    assert all(e is not None for e in found), "a chunk is missing"
    return [e.refs for e in found if e is not None]


async def test_put_stores_with_no_references(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        chunks = encode(random_bytes(200_000))
        await node.put_chunks(one_batch(chunks))
        assert refs(node, [c.id for c in chunks]) == [0] * len(chunks)
    finally:
        await node.close()


async def test_commit_and_delete_blob(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        data = random_bytes(300_000, seed=1)
        digest, recipe = await store_blob(node, data)
        assert refs(node, recipe.ids) == [1] * len(recipe)
        # Committing the same digest again is a no-op.
        await node.commit_blob(digest, recipe)
        assert refs(node, recipe.ids) == [1] * len(recipe)
        # A second blob sharing all but its last bytes shares their chunks.
        other = data + b"tail"
        other_digest, other_recipe = await store_blob(node, other)
        shared = set(recipe.ids) & set(other_recipe.ids)
        assert len(shared) >= len(recipe) - 1
        for cid, n in zip(recipe.ids, refs(node, recipe.ids), strict=True):
            assert n == (2 if cid in shared else 1)
        assert await node.delete_blob(digest)
        assert refs(node, other_recipe.ids) == [1] * len(other_recipe)
        assert not await node.delete_blob(digest)
        assert refs(node, other_recipe.ids) == [1] * len(other_recipe)
        assert await node.delete_blob(other_digest)
        assert set(refs(node, recipe.ids + other_recipe.ids)) == {0}
    finally:
        await node.close()


async def test_a_chunk_used_twice_in_one_blob_counts_twice(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        [chunk] = encode(random_bytes(5000, seed=2))
        await node.put_chunks(one_batch([chunk]))
        recipe = Recipe([chunk.id, chunk.id], [chunk.raw_length] * 2)
        data = bytes(chunk.data) * 2
        await node.commit_blob(sha256(data), recipe)
        assert refs(node, [chunk.id]) == [2]
        await node.delete_blob(sha256(data))
        assert refs(node, [chunk.id]) == [0]
    finally:
        await node.close()


async def test_counts_carry_across_bytes_and_back_to_zero(local_dir: Path) -> None:
    # Counts are raised by adding to the whole entry read as one integer: a carry out of
    # the count's low byte must land in the count, and nothing else in the entry move.
    node = await LocalNode.open(local_dir)
    try:
        [chunk] = encode(random_bytes(5000, seed=4))
        await node.put_chunks(one_batch([chunk]))
        [before] = node.chunks.entries([chunk.id])
        recipe = Recipe([chunk.id], [chunk.raw_length])
        digests = [sha256(b"%d" % n) for n in range(300)]
        for digest in digests:
            await node.commit_blob(digest, recipe)
        [after] = node.chunks.entries([chunk.id])
        assert after is not None and before is not None
        assert after == ChunkEntry(before.pack, before.offset, before.stored_length,
                                   before.raw_length, before.codec, 300, before.check)
        for digest in digests:
            await node.delete_blob(digest)
        assert refs(node, [chunk.id]) == [0]
    finally:
        await node.close()


async def test_a_recipe_with_a_wrong_length_changes_no_count(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        chunks = encode(random_bytes(100_000, seed=5))
        await node.put_chunks(one_batch(chunks))
        ids = [c.id for c in chunks]
        lengths = [c.raw_length for c in chunks]
        wrong = Recipe(ids, [*lengths[:-1], lengths[-1] + 1])
        with pytest.raises(InvalidArgument, match=chunks[-1].id.hex()):
            await node.commit_blob(sha256(b"y"), wrong)
        # One chunk given two lengths in one recipe: one of them is not its own.
        twice = Recipe([*ids, ids[0]], [*lengths, lengths[0] + 7])
        with pytest.raises(InvalidArgument, match=ids[0].hex()):
            await node.commit_blob(sha256(b"z"), twice)
        assert refs(node, ids) == [0] * len(ids)
    finally:
        await node.close()


async def test_failed_commit_changes_no_count(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        chunks = encode(random_bytes(100_000, seed=3))
        await node.put_chunks(one_batch(chunks[:-1]))
        with pytest.raises(NotFound, match=chunks[-1].id.hex()):
            await node.commit_blob(sha256(b"x"), recipe_of(chunks))
        assert refs(node, [c.id for c in chunks[:-1]]) == [0] * (len(chunks) - 1)
        assert await node.stat_blob(sha256(b"x")) is None
    finally:
        await node.close()


async def test_upload_append_finish_and_cancel(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        data = random_bytes(400_000, seed=4)
        chunks = encode(data)
        ids = [c.id for c in chunks]
        await node.put_chunks(one_batch(chunks))
        half = len(chunks) // 2

        upload = await node.create_upload("r")
        info = await node.append_upload("r", upload.id, 0, recipe_of(chunks[:half]))
        assert refs(node, ids) == [1] * half + [0] * (len(chunks) - half)
        await node.append_upload("r", upload.id, info.size, recipe_of(chunks[half:]))
        assert refs(node, ids) == [1] * len(chunks)
        # The session's references become the blob's: still one each.
        await node.finish_upload("r", upload.id, sha256(data))
        assert refs(node, ids) == [1] * len(chunks)

        # A second session over the same chunks, then cancelled: back to the blob's one.
        second = await node.create_upload("r")
        await node.append_upload("r", second.id, 0, recipe_of(chunks))
        assert refs(node, ids) == [2] * len(chunks)
        assert await node.cancel_upload("r", second.id)
        assert refs(node, ids) == [1] * len(chunks)

        # Finishing a session as a blob that already exists drops the session's references.
        third = await node.create_upload("other")
        await node.append_upload("other", third.id, 0, recipe_of(chunks))
        await node.finish_upload("other", third.id, sha256(data))
        assert refs(node, ids) == [1] * len(chunks)
        assert await node.stat_repository_blob("other", sha256(data)) is not None

        await node.delete_blob(sha256(data))
        assert refs(node, ids) == [0] * len(chunks)
    finally:
        await node.close()


async def test_append_of_a_missing_chunk_changes_nothing(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        chunks = encode(random_bytes(100_000, seed=5))
        await node.put_chunks(one_batch(chunks[1:]))
        upload = await node.create_upload("r")
        with pytest.raises(NotFound):
            await node.append_upload("r", upload.id, 0, recipe_of(chunks))
        assert refs(node, [c.id for c in chunks[1:]]) == [0] * (len(chunks) - 1)
        info = await node.get_upload("r", upload.id)
        assert info is not None and info.size == 0
    finally:
        await node.close()


async def test_idle_uploads_expire_and_release_their_chunks(local_dir: Path) -> None:
    node = await LocalNode.open(local_dir)
    try:
        chunks = encode(random_bytes(120_000, seed=21))
        await node.put_chunks(one_batch(chunks))
        idle = await node.create_upload("lib/idle")
        await node.append_upload("lib/idle", idle.id, 0, recipe_of(chunks))
        fresh = await node.create_upload("lib/fresh")
        assert refs(node, [c.id for c in chunks]) == [1] * len(chunks)

        # Nothing is idle for a day yet.
        assert node.uploads.expire(idle_ms=24 * 3600 * 1000) == []
        # Seen from an hour later, both sessions are older than a minute of idleness.
        later = idle.started_at_ms + 3600 * 1000
        assert sorted(node.uploads.expire(idle_ms=60_000, now_ms=later)) == sorted(
            [idle.id, fresh.id])
        assert await node.get_upload("lib/idle", idle.id) is None
        assert await node.get_upload("lib/fresh", fresh.id) is None
        assert refs(node, [c.id for c in chunks]) == [0] * len(chunks)
    finally:
        await node.close()
