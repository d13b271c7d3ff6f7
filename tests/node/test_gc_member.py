"""A cluster member's part of a collection (node/gc/cluster.py), in-process with a clock
the test moves: liveness comes from outside, stamps and grace work as on one node."""

from __future__ import annotations

from pathlib import Path

from nodetest import pieces, random_bytes, sha256
from test_gc import GRACE, FakeClock

from node.blobio import write_blob
from node.gc.bloom import HASHES, ChunkFilter, size_for
from node.gc.cluster import MemberCollector
from node.gc.collector import GcConfig
from node.local import LocalNode

REPO = "team/app"


async def member_with_blob(path: Path, clock: FakeClock) -> tuple[LocalNode, str]:
    node = await LocalNode.open(path, member=True, clock=clock)
    data = random_bytes(300 << 10, seed=81)
    digest = sha256(data)
    await write_blob(node, REPO, digest, pieces(data, 64 << 10))
    await node.unlink_blob(REPO, digest)
    return node, digest


async def sweep(gc: MemberCollector, live: frozenset[str] = frozenset(),
                dry_run: bool = False) -> tuple[int, int]:
    """(blobs, chunks) deleted, or that would be, with `live` as the cluster's live set."""
    bits = size_for(1000)
    blobs, used = await gc.sweep_blobs(live, dry_run, bits, HASHES)
    merged = ChunkFilter(bits, HASHES)
    merged.merge(used)
    chunks = await gc.sweep_chunks(merged, dry_run)
    return blobs.blobs_deleted, chunks.chunks_deleted


async def test_a_blob_another_member_keeps_alive_stays(local_dir: Path) -> None:
    clock = FakeClock()
    node, digest = await member_with_blob(local_dir, clock)
    try:
        gc = MemberCollector(node, GcConfig(grace_ms=GRACE, duty=1.0))
        assert (await gc.live_blobs())[0] == []
        assert await sweep(gc, frozenset({digest})) == (0, 0)
        clock.advance(GRACE + 1)
        assert await sweep(gc, frozenset({digest})) == (0, 0)
        assert await node.stat_blob(digest) is not None
        # Unreferenced everywhere: stamped, then the recipe goes, then its chunks.
        assert await sweep(gc) == (0, 0)
        clock.advance(GRACE + 1)
        assert await sweep(gc, dry_run=True) == (1, 0)
        deleted, _ = await sweep(gc)
        assert deleted == 1 and await node.stat_blob(digest) is None
        clock.advance(GRACE + 1)
        _, would = await sweep(gc, dry_run=True)
        _, went = await sweep(gc)
        assert would == went > 0
        assert node.stats().chunks == 0
    finally:
        await node.close()


async def test_a_link_elsewhere_restarts_the_grace_period(local_dir: Path) -> None:
    """A cluster's link stats the blob on its owners with `referencing`, which clears the
    stamp: a run that marked before the link cannot delete the recipe."""
    clock = FakeClock()
    node, digest = await member_with_blob(local_dir, clock)
    try:
        gc = MemberCollector(node, GcConfig(grace_ms=GRACE, duty=1.0))
        await sweep(gc)
        clock.advance(GRACE + 1)
        assert await node.stat_blob(digest) is not None  # a plain stat (repair's) revives nothing
        assert await node.stat_blob(digest, referencing=True) is not None
        assert await sweep(gc) == (0, 0)
        assert await node.stat_blob(digest) is not None
    finally:
        await node.close()


async def test_a_chunk_found_present_by_a_writer_is_revived(local_dir: Path) -> None:
    clock = FakeClock()
    node, digest = await member_with_blob(local_dir, clock)
    try:
        gc = MemberCollector(node, GcConfig(grace_ms=GRACE, duty=1.0))
        recipe = await node.get_recipe(digest)
        await node.delete_blob(digest)
        assert await sweep(gc) == (0, 0)         # the chunks are stamped
        clock.advance(GRACE + 1)
        assert await node.has_chunks(recipe.ids[:1]) == [True]   # a writer will use it
        _, went = await sweep(gc)
        assert went == len(set(recipe.ids)) - 1
        assert await node.chunk_lengths(recipe.ids[:1]) != [None]
    finally:
        await node.close()
