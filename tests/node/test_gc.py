"""Online garbage collection on one node: grace periods, revival, pushes and pulls that
run while it collects, compaction, and what kill -9 in the middle of it leaves."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from nodetest import collect, pieces, random_bytes, sha256

from node.blobio import write_blob
from node.gc.chunks import ChunkSweeper
from node.gc.collector import GarbageCollector, GcConfig, GcReport
from node.gc.pacing import Pacer
from node.local import LocalNode

GRACE = 60_000
REPO = "team/app"


class FakeClock:
    """Milliseconds that move only when a test says so."""

    def __init__(self) -> None:
        self.ms = 1_700_000_000_000
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self.ms

    def advance(self, ms: int) -> None:
        with self._lock:
            self.ms += ms


async def open_node(path: Path, clock: FakeClock, pack_limit: int = 1 << 20) -> LocalNode:
    return await LocalNode.open(path, clock=clock, pack_limit=pack_limit)


def collector(node: LocalNode, grace: int = GRACE) -> GarbageCollector:
    return GarbageCollector(node, GcConfig(grace_ms=grace, duty=1.0))


async def push(node: LocalNode, data: bytes, repository: str = REPO) -> str:
    digest = sha256(data)
    await write_blob(node, repository, digest, pieces(data, 64 << 10))
    return digest


def pack_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path / "packs").glob("pack-*.dat"))


def outcome(report: GcReport) -> tuple[object, ...]:
    return (report.blobs_deleted, report.blob_bytes, report.chunks_deleted,
            report.chunk_bytes, report.packs_compacted, report.bytes_moved,
            report.disk_bytes_reclaimed, report.blobs_waiting, report.chunks_waiting,
            report.blobs)


async def test_the_grace_period_is_honoured_for_blobs_then_chunks(local_dir: Path) -> None:
    clock = FakeClock()
    node = await open_node(local_dir, clock)
    try:
        gc = collector(node)
        kept = random_bytes(200_000, seed=1)
        doomed = random_bytes(300_000, seed=2)
        kept_digest = await push(node, kept)
        doomed_digest = await push(node, doomed)
        assert await node.unlink_blob(REPO, doomed_digest)

        first = await gc.collect()  # finds it unreferenced: the grace period starts now
        assert (first.blobs_deleted, first.blobs_waiting) == (0, 1)
        clock.advance(GRACE - 1)
        assert (await gc.collect()).blobs_deleted == 0
        assert await node.stat_blob(doomed_digest) is not None
        clock.advance(1)
        second = await gc.collect()
        assert second.blobs == [doomed_digest]
        assert await node.stat_blob(doomed_digest) is None
        # Its chunks became unreferenced just now: they wait out a grace period of their own.
        assert second.chunks_deleted == 0 and second.chunks_waiting > 0
        clock.advance(GRACE)
        before = pack_bytes(local_dir)
        third = await gc.collect()
        assert third.chunks_deleted == second.chunks_waiting
        assert third.chunk_bytes >= len(doomed) * 0.9  # random bytes: stored raw
        assert third.disk_bytes_reclaimed > 0
        assert pack_bytes(local_dir) <= before - third.disk_bytes_reclaimed
        assert await collect(node.read_blob(kept_digest)) == kept
    finally:
        await node.close()


async def test_a_dry_run_and_the_real_run_agree(local_dir: Path) -> None:
    clock = FakeClock()
    node = await open_node(local_dir, clock, pack_limit=256 << 10)
    try:
        gc = collector(node, grace=0)
        blobs = [random_bytes(150_000, seed=10 + i) for i in range(12)]
        digests = [await push(node, b) for b in blobs]
        for digest in digests[::3] + digests[1::3]:
            assert await node.unlink_blob(REPO, digest)
        dry = await gc.collect(dry_run=True)
        assert dry.dry_run and dry.blobs_deleted == 8 and dry.packs_compacted > 0
        assert await node.stat_blob(digests[0]) is not None  # a dry run changes nothing
        real = await gc.collect()
        assert outcome(real) == outcome(dry)
        again = await gc.collect(dry_run=True)
        assert (again.blobs_deleted, again.chunks_deleted, again.packs_compacted) == (0, 0, 0)
        for data, digest in zip(blobs[2::3], digests[2::3], strict=True):
            assert await collect(node.read_blob(digest)) == data
    finally:
        await node.close()


async def test_a_manifest_keeps_its_blobs_alive(local_dir: Path) -> None:
    from node.api import ManifestRecord

    clock = FakeClock()
    node = await open_node(local_dir, clock)
    try:
        gc = collector(node, grace=0)
        layer = random_bytes(100_000, seed=3)
        layer_digest = await push(node, layer)
        content = (b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1'
                   b'+json","config":{"mediaType":"x/y","digest":"' + layer_digest.encode()
                   + b'","size":1},"layers":[]}')
        manifest = ManifestRecord(sha256(content), "application/vnd.oci.image.manifest.v1+json",
                                  content)
        await node.put_manifest(REPO, manifest, ["v1"], [layer_digest])
        assert await node.unlink_blob(REPO, layer_digest)
        assert (await gc.collect()).blobs_deleted == 0
        assert await node.delete_manifest(REPO, manifest.digest)
        assert (await gc.collect()).blobs == [layer_digest]
    finally:
        await node.close()


async def test_a_chunk_found_present_is_revived_not_lost(local_dir: Path) -> None:
    clock = FakeClock()
    node = await open_node(local_dir, clock)
    try:
        gc = collector(node)
        data = random_bytes(200_000, seed=4)
        digest = await push(node, data)
        assert await node.unlink_blob(REPO, digest)
        await gc.collect()
        clock.advance(GRACE)
        assert (await gc.collect()).blobs_deleted == 1
        clock.advance(GRACE)
        # The chunks' grace is over: a plan would take them.
        plan = gc.plan(False, Pacer(1.0))
        assert plan.chunks
        # A push finds them present before the sweep acts: they are revived...
        assert all(await node.has_chunks(plan.chunks))
        swept = ChunkSweeper(node.index, node.chunks).sweep(
            plan.chunks, clock() - GRACE, Pacer(1.0))
        assert swept.count == 0  # ...and the sweep, re-checking in its transaction, keeps them
        assert (await gc.collect()).chunks_deleted == 0
        # The push goes on within the grace period and never sends them again.
        clock.advance(GRACE // 2)
        await gc.collect()
        assert await push(node, data) == digest
        assert await collect(node.read_blob(digest)) == data
    finally:
        await node.close()


async def test_a_recipe_committed_again_takes_its_chunks_off_the_waiting_list(
        local_dir: Path) -> None:
    """A blob collected, then committed again from its recipe alone (a client that knows
    the chunks are there asks nothing first): its chunks are referenced again, and their
    grace period, which had begun, must not end in their deletion."""
    clock = FakeClock()
    node = await open_node(local_dir, clock)
    try:
        gc = collector(node)
        data = random_bytes(200_000, seed=5)
        digest = await push(node, data)
        recipe = await node.get_recipe(digest)
        assert await node.unlink_blob(REPO, digest)
        await gc.collect()
        clock.advance(GRACE)
        assert (await gc.collect()).blobs_deleted == 1  # its chunks start waiting now
        await node.commit_blob(digest, recipe)
        waiting = node.index.read(lambda txn: txn.stat(node.chunks.unreferenced_db)["entries"])
        assert waiting == 0  # taken off the list at once, not left for a sweep to tidy
        clock.advance(2 * GRACE)
        report = await gc.collect()
        assert (report.chunks_deleted, report.chunks_waiting) == (0, 0)
        assert await collect(node.read_blob(digest)) == data
    finally:
        await node.close()


async def test_gc_while_the_same_layers_are_pushed_never_breaks_the_push(
        local_dir: Path) -> None:
    clock = FakeClock()
    node = await open_node(local_dir, clock, pack_limit=512 << 10)
    try:
        gc = collector(node, grace=10_000)
        layers = [random_bytes(400_000, seed=20 + i) for i in range(6)]
        digests = [await push(node, layer) for layer in layers]
        for digest in digests:
            assert await node.unlink_blob(REPO, digest)
        # Everything is unreferenced and long past its grace: any run may take it now.
        await gc.collect()
        clock.advance(60_000)
        stop = threading.Event()
        runs = 0

        def collect_forever() -> None:
            nonlocal runs
            while not stop.is_set():
                gc.run()
                clock.advance(10)  # time moves, but far less than a grace period per run
                runs += 1

        worker = threading.Thread(target=collect_forever)
        worker.start()
        try:
            for round_ in range(3):
                for layer in layers:
                    assert await push(node, layer, f"team/app{round_}") == sha256(layer)
        finally:
            stop.set()
            await asyncio.to_thread(worker.join)
        assert runs > 0
        for round_ in range(3):
            for layer, digest in zip(layers, digests, strict=True):
                info = await node.stat_repository_blob(f"team/app{round_}", digest)
                assert info is not None
                assert await collect(node.read_blob(digest)) == layer
    finally:
        await node.close()


async def test_pulls_during_gc_and_compaction_return_every_byte(local_dir: Path) -> None:
    clock = FakeClock()
    node = await open_node(local_dir, clock, pack_limit=256 << 10)
    try:
        gc = collector(node, grace=0)
        big = random_bytes(3 << 20, seed=30)
        blobs = [random_bytes(120_000, seed=40 + i) for i in range(24)]
        digests = []
        for i, data in enumerate(blobs):
            digests.append(await push(node, data))
            if i == 4:
                big_digest = await push(node, big)
        for digest in [d for i, d in enumerate(digests) if i % 3]:
            assert await node.unlink_blob(REPO, digest)
        kept = [(d, b) for i, (d, b) in enumerate(zip(digests, blobs, strict=True))
                if i % 3 == 0]
        before = pack_bytes(local_dir)

        # One pull half done while a whole collection, compaction included, runs.
        stream = aiter(node.read_blob(big_digest))
        got = bytearray(await anext(stream))
        report = await gc.collect()
        async for piece in stream:
            got += piece
        assert bytes(got) == big
        assert report.blobs_deleted == 16 and report.packs_compacted > 0
        assert pack_bytes(local_dir) < before

        # More pulls, looping while a second node's worth of deletions is collected.
        for digest, _ in kept[1:]:
            assert await node.unlink_blob(REPO, digest)
        done = asyncio.Event()
        pulls = 0

        async def pull_forever() -> None:
            nonlocal pulls
            while not done.is_set():
                assert await collect(node.read_blob(big_digest)) == big
                assert await collect(node.read_blob(kept[0][0])) == kept[0][1]
                pulls += 1

        puller = asyncio.create_task(pull_forever())
        try:
            second = await gc.collect()
        finally:
            done.set()
            await puller
        assert second.packs_compacted > 0 and pulls > 0
        assert await collect(node.read_blob(big_digest)) == big
    finally:
        await node.close()


CRASHING_RUN = """
import os, signal, sys
from pathlib import Path
from node.gc.collector import GarbageCollector, GcConfig
from node.local import LocalNode

step, count = sys.argv[2], int(sys.argv[3])
seen = 0

def hook(name, pack):
    global seen
    if name == step:
        seen += 1
        if seen == count:
            os.kill(os.getpid(), signal.SIGKILL)

node = LocalNode(Path(sys.argv[1]), pack_limit=256 << 10)
GarbageCollector(node, GcConfig(grace_ms=0, duty=1.0), on_step=hook).run()
print("finished without reaching the step")
"""


@pytest.mark.parametrize("step,count", [("copied", 1), ("synced", 2), ("moved", 1),
                                        ("moved", 3), ("retired", 1), ("deleted", 1)])
async def test_kill_9_in_the_middle_of_a_compaction_leaves_a_consistent_node(
        local_dir: Path, step: str, count: int) -> None:
    node = await LocalNode.open(local_dir, pack_limit=256 << 10)
    blobs = [random_bytes(100_000, seed=60 + i) for i in range(18)]
    try:
        digests = [await push(node, data) for data in blobs]
        for digest in digests[1::3] + digests[2::3]:
            assert await node.unlink_blob(REPO, digest)
    finally:
        await node.close()
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", CRASHING_RUN, str(local_dir), step, str(count)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == -9, result.stdout + result.stderr

    node = await LocalNode.open(local_dir, pack_limit=256 << 10)
    try:
        for data, digest in zip(blobs[::3], digests[::3], strict=True):
            assert await collect(node.read_blob(digest)) == data
        # The next run finishes the job: orphan packs and unindexed copies go.
        await collector(node, grace=0).collect()
        await collector(node, grace=0).collect()
        for data, digest in zip(blobs[::3], digests[::3], strict=True):
            assert await collect(node.read_blob(digest)) == data
        ends = node.chunks.pack_ends()
        live: dict[int, int] = {}
        for _, entry in ChunkSweeper(node.index, node.chunks).scan(Pacer(1.0)):
            live[entry.pack] = live.get(entry.pack, 0) + entry.stored_length
        for number in node.packs.numbers():
            size = node.packs.size(number)
            assert size == ends.get(number, 0), f"pack {number} has a dead tail"
            assert live.get(number, 0) * 2 >= size or number == node.packs.current
        assert not node.chunks.corrupt_chunks()
    finally:
        await node.close()


async def test_a_dead_tail_is_cut_but_never_a_write_committed_since_the_plan(
        local_dir: Path) -> None:
    from nodetest import encode

    from node.gc.compaction import Compaction, Compactor

    clock = FakeClock()
    node = await open_node(local_dir, clock)
    try:
        gc = collector(node)
        kept = random_bytes(100_000, seed=70)
        kept_digest = await push(node, kept)
        abandoned = node.chunks.begin_put()
        abandoned.write(encode(random_bytes(50_000, seed=71)))
        abandoned.close()  # a push that died: its bytes are in the pack, never indexed
        current = node.packs.current
        assert node.packs.size(current) > (node.chunks.pack_end(current) or 0)

        plan = gc.plan(False, Pacer(1.0))
        assert current in plan.tails
        late = random_bytes(80_000, seed=72)  # committed after the plan was made
        late_digest = await push(node, late)
        Compactor(node.chunks).trim(sorted(plan.tails), Compaction())
        assert await collect(node.read_blob(late_digest)) == late
        assert node.packs.size(current) == node.chunks.pack_end(current)

        # With nothing written since, the next run cuts the tail an abandoned write left.
        abandoned = node.chunks.begin_put()
        abandoned.write(encode(random_bytes(50_000, seed=73)))
        abandoned.close()
        report = await gc.collect()
        assert report.disk_bytes_reclaimed >= 50_000
        assert node.packs.size(current) == node.chunks.pack_end(current)
        assert await collect(node.read_blob(kept_digest)) == kept
        assert await collect(node.read_blob(late_digest)) == late
    finally:
        await node.close()


async def test_a_stopping_node_refuses_new_runs(local_dir: Path) -> None:
    from node.gc.pacing import Stopped

    node = await open_node(local_dir, FakeClock())
    try:
        gc = collector(node)
        await gc.collect()
        gc.stop()
        with pytest.raises(Stopped):
            await gc.collect()
    finally:
        await node.close()
