"""The cluster under faults, with real member processes on loopback: members killed
mid-push and mid-pull, restarted, added, stopped; corrupt chunk files; a full disk.

The client is ClusterNode, the store every gateway of a cluster uses; pushes go through
the same streaming writer (node/blobio.py) the gateway's uploads do.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from cluster.clustertest import ClusterProcesses, running_cluster, top_level_support
from nodetest import collect, pieces, sha256

from node.api import NodeAPI
from node.blobio import write_blob
from node.cluster import placement
from node.cluster.client import ClusterNode
from node.errors import NodeError
from node.rpc.client import RemoteNode

CONVERGE_TIMEOUT = 120.0


async def status(cluster: ClusterProcesses) -> tuple[int, dict[str, object]]:
    """`shoal status --json`, run as the operator would."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal", "status", "--cluster", str(cluster.file), "--json",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode in (0, 1), err.decode()
    return proc.returncode, json.loads(out)


async def wait_converged(cluster: ClusterProcesses) -> dict[str, object]:
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:
        code, report = await status(cluster)
        if code == 0:
            assert report["converged"] and report["under_replicated"] == 0
            return report
        assert time.monotonic() < deadline, f"never converged: {report}\n{cluster.logs()}"
        await asyncio.sleep(0.5)


async def wait_all_up(api: ClusterNode) -> None:
    """The client has seen every member come back: a restarted member is noticed within
    seconds (its health check reconnects without waiting out gRPC's long backoff)."""
    deadline = time.monotonic() + 10.0
    while not all(p.up for p in api.members.peers):
        down = [p.id for p in api.members.peers if not p.up]
        assert time.monotonic() < deadline, f"members still seen down: {down}"
        await asyncio.sleep(0.2)


async def push_with_retry(api: NodeAPI, repo: str, data: bytes,
                          body: AsyncIterator[bytes]) -> None:
    """What a registry client does: push, and push again if the push failed."""
    try:
        await write_blob(api, repo, sha256(data), body)
    except NodeError:
        await write_blob(api, repo, sha256(data), pieces(data))


async def assert_on_owners(cluster: ClusterProcesses, digest: str, api: ClusterNode) -> None:
    """Every chunk of the blob is on each of its R owners (all members up)."""
    recipe = await api.get_recipe(digest)
    members = list(cluster.config.members)
    for member in members:
        ids = [cid for cid in dict.fromkeys(recipe.ids)
               if member in placement.owners(members, placement.CHUNK, cid,
                                             cluster.config.replicas)]
        node = RemoteNode(member.address)
        try:
            held = await node.chunk_lengths(ids)
            assert all(n is not None for n in held), f"{member.id} lacks chunks it owns"
            if member in placement.owners(members, placement.BLOB, digest,
                                          cluster.config.replicas):
                assert await node.stat_blob(digest) is not None
        finally:
            await node.close()


async def test_kill_mid_push_and_mid_pull_then_repair(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2) as cluster:
        api = await ClusterNode.connect(cluster.config)
        try:
            repo = f"faults/{uuid.uuid4().hex[:8]}"
            before = os.urandom(8 << 20)
            await write_blob(api, repo, sha256(before), pieces(before))
            data = os.urandom(40 << 20)

            async def body() -> AsyncIterator[bytes]:
                for offset in range(0, len(data), 1 << 20):
                    if offset == 12 << 20:
                        cluster.nodes["node2"].kill()
                    yield data[offset:offset + (1 << 20)]

            await push_with_retry(api, repo, data, body())
            # Every acknowledged blob is whole with a member down.
            assert await collect(api.read_blob(sha256(data))) == data
            assert await collect(api.read_blob(sha256(before))) == before

            code, report = await status(cluster)
            assert code == 1 and not report["healthy"]
            cluster.nodes["node2"].start()
            await wait_converged(cluster)
            await assert_on_owners(cluster, sha256(data), api)
            await wait_all_up(api)

            # A pull survives the loss of a member it is reading from.
            got = bytearray()
            async for piece in api.read_blob(sha256(data)):
                if not got:
                    cluster.nodes["node1"].kill()
                got += piece
            assert bytes(got) == data
            assert await collect(api.read_blob(sha256(before))) == before
        finally:
            await api.close()


async def test_a_new_member_receives_what_it_now_owns(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2, extra_members=1) as cluster:
        api = await ClusterNode.connect(cluster.config)
        data = os.urandom(16 << 20)
        try:
            await write_blob(api, "grow/me", sha256(data), pieces(data))
        finally:
            await api.close()
        cluster.add_member()
        await wait_converged(cluster)
        api = await ClusterNode.connect(cluster.config)
        try:
            await assert_on_owners(cluster, sha256(data), api)
            node4 = RemoteNode(cluster.config.members[-1].address)
            try:
                assert (await node4.list_repositories()) in ([], ["grow/me"])
                recipe = await api.get_recipe(sha256(data))
                assert any(await node4.has_chunks(recipe.ids))
            finally:
                await node4.close()
            assert await collect(api.read_blob(sha256(data))) == data
            # Members that owned chunks before node4 came and no longer do let them go:
            # only what changed owners moved, and nothing is kept twice.
            members = list(cluster.config.members)
            unique = list(dict.fromkeys(recipe.ids))
            for member in members:
                node = RemoteNode(member.address)
                try:
                    held = await node.has_chunks(unique)
                finally:
                    await node.close()
                for cid, has in zip(unique, held, strict=True):
                    owns = member in placement.owners(members, placement.CHUNK, cid,
                                                      cluster.config.replicas)
                    assert has == owns, f"{member.id} {'lacks' if owns else 'keeps'} a chunk"
        finally:
            await api.close()


def corrupt_packs(data_dir: Path) -> int:
    """Flip a byte every 512 KiB in every pack file; how many bytes were flipped."""
    flipped = 0
    for pack in sorted((data_dir / "packs").glob("pack-*.dat")):
        with pack.open("r+b") as f:
            size = pack.stat().st_size
            for offset in range(4096, size, 512 << 10):
                f.seek(offset)
                byte = f.read(1)
                f.seek(offset)
                f.write(bytes([byte[0] ^ 0xFF]))
                flipped += 1
    return flipped


async def test_scrub_repairs_corrupt_chunks_from_a_replica(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2, scrub_interval=2.0) as cluster:
        api = await ClusterNode.connect(cluster.config)
        try:
            data = os.urandom(12 << 20)
            await write_blob(api, "scrub/me", sha256(data), pieces(data))
            victim = cluster.nodes["node3"]
            assert corrupt_packs(victim.data) > 10
            # Before any scrub, reads come back right from the other owners.
            assert await collect(api.read_blob(sha256(data))) == data

            deadline = time.monotonic() + CONVERGE_TIMEOUT
            node3 = RemoteNode(victim.target)
            try:
                recipe = await api.get_recipe(sha256(data))
                held = [cid for cid, n in zip(recipe.ids, await node3.chunk_lengths(recipe.ids),
                                              strict=True) if n is not None]
                assert held
                while True:
                    _, report = await status(cluster)
                    members = {m["id"]: m for m in report["members"]}  # type: ignore[attr-defined]
                    if members["node3"]["scrubbed_chunks"] and \
                            not members["node3"]["corrupt_chunks"]:
                        try:
                            # Straight from node3, which checks every read: all good again.
                            got = [c async for c in node3.get_chunks(held)]
                            assert [c.id for c in got] == held
                            break
                        except NodeError:
                            pass
                    assert time.monotonic() < deadline, cluster.logs()
                    await asyncio.sleep(0.5)
            finally:
                await node3.close()
            assert "replaced by copies from other members" in victim.log()
            assert await collect(api.read_blob(sha256(data))) == data
        finally:
            await api.close()


async def test_a_member_with_a_full_disk_refuses_and_the_data_goes_elsewhere(
        scratch: Path) -> None:
    with top_level_support().small_tmpfs("12m") as small:
        cluster = ClusterProcesses(scratch, n=3, replicas=2)
        cluster.nodes["node3"].data = small / "data"
        try:
            cluster.start()
            api = await ClusterNode.connect(cluster.config)
            try:
                data = os.urandom(48 << 20)
                # The push completes, or fails with a clear error (the member keeping its
                # upload session filled up) and the client's retry completes.
                await push_with_retry(api, "full/disk", data, pieces(data))
                assert await collect(api.read_blob(sha256(data))) == data
                info = await api.stat_repository_blob("full/disk", sha256(data))
                assert info is not None and info.size == len(data)
                # node3 did fill up, so it refused part of its share: the rest went to
                # the next members, and the blob above is whole.
                assert shutil.disk_usage(small).free < 2 << 20
            finally:
                await api.close()
        finally:
            cluster.stop()


async def test_a_stopped_member_never_loses_an_acknowledged_write(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2) as cluster:
        api = await ClusterNode.connect(cluster.config)
        try:
            blobs = [os.urandom(4 << 20) for _ in range(4)]
            await write_blob(api, "stop/me", sha256(blobs[0]), pieces(blobs[0]))
            cluster.pause("node1")  # a partition: it neither answers nor fails
            try:
                for data in blobs[1:]:
                    await push_with_retry(api, "stop/me", data, pieces(data))
                for data in blobs:
                    assert await collect(api.read_blob(sha256(data))) == data
            finally:
                cluster.resume("node1")
            await wait_converged(cluster)
            for data in blobs:
                await assert_on_owners(cluster, sha256(data), api)
        finally:
            await api.close()


async def test_a_member_that_serves_wrong_bytes_is_caught(scratch: Path) -> None:
    """A member that claims every chunk and answers reads with the wrong bytes: the client
    checks each chunk against its id, treats the liar as failed for it, and reads the
    chunk from the next owner."""
    cluster = ClusterProcesses(scratch, n=3, replicas=2)
    liar_member = cluster.config.members[2]
    del cluster.nodes[liar_member.id]  # the liar stands in for node3
    served = scratch / "liar-served"
    liar = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("liar.py")),
        liar_member.address.rsplit(":", 1)[1], str(served))
    try:
        cluster.start()
        api = await ClusterNode.connect(cluster.config)
        try:
            await api.members.check_all()
            data = os.urandom(8 << 20)
            await write_blob(api, "liar/app", sha256(data), pieces(data))
            recipe = await api.get_recipe(sha256(data))
            assert any(placement.rank(list(cluster.config.members), placement.CHUNK, cid)[0]
                       == liar_member for cid in recipe.ids)
            # The liar refuses what it does not implement (recipes, metadata), which marks it
            # down for a moment; it answers health checks, so it is back once checked.
            await api.members.check_all()
            fetched = await api.chunks.fetch(recipe.ids)
            assert b"".join(raw for _, raw in fetched) == data
            assert int(served.read_text()) > 0  # it was asked, and its bytes were refused
            assert await collect(api.read_blob(sha256(data))) == data
        finally:
            await api.close()
    finally:
        liar.kill()
        await liar.wait()
        cluster.stop()
