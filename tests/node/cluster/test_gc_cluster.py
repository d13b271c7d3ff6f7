"""Garbage collection across a cluster (`shoal gc --cluster`), on three real members
(R=2) whose grace period is 2 s: blobs deleted through a gateway (and the client it uses) are
reclaimed on every member, shared ones are kept everywhere, a dry run agrees with the
real run, a run with a member down refuses, and a push racing the collection survives.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster.clustertest import ClusterProcesses, running_cluster
from nodetest import collect, pieces, random_bytes, sha256
from test_gateways import http, start_gateway

from node.api import ManifestRecord
from node.blobio import write_blob
from node.cluster.client import ClusterNode
from node.cluster.gc import collect_cluster
from node.rpc.client import RemoteNode

GRACE = 2.0
OCI = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def gc_cluster() -> Iterator[ClusterProcesses]:
    path = Path(tempfile.mkdtemp(prefix="shoal-cluster-gc-"))
    try:
        # No repair passes: a copy repair sends between two members' sweeps would only
        # make a chunk wait for the next run, which these tests would have to wait out.
        with running_cluster(path, n=3, replicas=2, repair_interval=3600.0,
                             node_args=["--gc-grace", f"{GRACE}s"]) as cluster:
            yield cluster
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def shoal_gc(cluster: ClusterProcesses, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shoal", "gc", "--cluster", str(cluster.file), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def gc_json(cluster: ClusterProcesses, *args: str) -> dict[str, Any]:
    code, out, err = await shoal_gc(cluster, "--json", *args)
    assert code == 0, err + cluster.logs()
    report: dict[str, Any] = json.loads(out)
    return report


async def held(cluster: ClusterProcesses, ids: list[bytes]) -> dict[str, int]:
    """How many of `ids` each member stores."""
    counts = {}
    for member in cluster.config.members:
        node = RemoteNode(member.address)
        try:
            lengths = await node.chunk_lengths(ids)
        finally:
            await node.close()
        counts[member.id] = sum(n is not None for n in lengths)
    return counts


async def recipe_copies(cluster: ClusterProcesses, digest: str) -> int:
    copies = 0
    for member in cluster.config.members:
        node = RemoteNode(member.address)
        try:
            copies += await node.stat_blob(digest) is not None
        finally:
            await node.close()
    return copies


def pack_bytes(cluster: ClusterProcesses) -> int:
    return sum(f.stat().st_size for mid in cluster.nodes
               for f in (cluster.workdir / mid / "data" / "packs").glob("*") if f.is_file())


def counts(report: dict[str, Any], what: str) -> dict[str, int]:
    return {mid: r[what] for mid, r in report["members"].items()}


async def test_deleted_blobs_go_everywhere_and_shared_ones_stay(
        gc_cluster: ClusterProcesses) -> None:
    prefix = f"gc{uuid.uuid4().hex[:8]}"
    api = await ClusterNode.connect(gc_cluster.config)
    try:
        layer, shared = random_bytes(3 << 20, seed=71), random_bytes(2 << 20, seed=72)
        layer_digest, shared_digest = sha256(layer), sha256(shared)
        await write_blob(api, f"{prefix}/app", layer_digest, pieces(layer))
        await write_blob(api, f"{prefix}/app", shared_digest, pieces(shared))
        await write_blob(api, f"{prefix}/other", shared_digest, pieces(shared))
        content = json.dumps({"schemaVersion": 2, "mediaType": OCI,
                              "layers": [{"digest": layer_digest}]}).encode()
        manifest = ManifestRecord(sha256(content), OCI, content)
        await api.put_manifest(f"{prefix}/app", manifest, ["v1"])
        layer_ids = list(dict.fromkeys((await api.get_recipe(layer_digest)).ids))
        shared_ids = list(dict.fromkeys((await api.get_recipe(shared_digest)).ids))
        before = await held(gc_cluster, layer_ids)
        assert sum(before.values()) == 2 * len(layer_ids)

        # Still referenced by the manifest: nothing of it goes.
        await api.unlink_blob(f"{prefix}/app", layer_digest)
        first = await gc_json(gc_cluster)
        assert layer_digest not in {d for r in first["members"].values() for d in r["blobs"]}
        await asyncio.sleep(GRACE + 0.2)
        assert await recipe_copies(gc_cluster, layer_digest) == 2

        await api.delete_manifest(f"{prefix}/app", manifest.digest)
        await api.unlink_blob(f"{prefix}/app", shared_digest)
        await gc_json(gc_cluster)              # stamps the recipe
        await asyncio.sleep(GRACE + 0.2)
        dry = await gc_json(gc_cluster, "--dry-run")
        real = await gc_json(gc_cluster)       # deletes it, stamps its chunks
        assert dry["dry_run"] and not real["dry_run"]
        assert counts(dry, "blobs_deleted") == counts(real, "blobs_deleted")
        assert sum(counts(real, "blobs_deleted").values()) >= 2
        assert {d for r in real["members"].values() for d in r["blobs"]} >= {layer_digest}
        assert await recipe_copies(gc_cluster, layer_digest) == 0
        assert await recipe_copies(gc_cluster, shared_digest) == 2

        await asyncio.sleep(GRACE + 0.2)
        disk = pack_bytes(gc_cluster)
        dry = await gc_json(gc_cluster, "--dry-run")
        assert sum((await held(gc_cluster, layer_ids)).values()) == 2 * len(layer_ids)
        real = await gc_json(gc_cluster)       # the chunks' grace is over: they go
        assert counts(dry, "chunks_deleted") == counts(real, "chunks_deleted")
        assert counts(dry, "chunk_bytes") == counts(real, "chunk_bytes")
        assert real["total"]["chunks_deleted"] >= 2 * len(layer_ids)
        assert sum((await held(gc_cluster, layer_ids)).values()) == 0
        assert sum((await held(gc_cluster, shared_ids)).values()) == 2 * len(shared_ids)
        assert real["total"]["disk_bytes_reclaimed"] > 0
        assert pack_bytes(gc_cluster) < disk - (2 << 20)
        assert await collect(api.read_blob(shared_digest)) == shared
    finally:
        await api.close()


async def test_a_member_down_refuses_the_run(gc_cluster: ClusterProcesses) -> None:
    api = await ClusterNode.connect(gc_cluster.config)
    try:
        data = random_bytes(1 << 20, seed=73)
        digest = sha256(data)
        repo = f"gc{uuid.uuid4().hex[:8]}/down"
        await write_blob(api, repo, digest, pieces(data))
        ids = list(dict.fromkeys((await api.get_recipe(digest)).ids))
        await api.unlink_blob(repo, digest)
        await gc_json(gc_cluster)
        await asyncio.sleep(GRACE + 0.2)
        gc_cluster.pause("node3")
        try:
            code, _, err = await shoal_gc(gc_cluster, "--timeout", "3s")
        finally:
            gc_cluster.resume("node3")
        assert code != 0
        assert "nothing was collected" in err and "node3" in err, err
        assert await recipe_copies(gc_cluster, digest) == 2
        assert sum((await held(gc_cluster, ids)).values()) == 2 * len(ids)
    finally:
        await api.close()


async def test_a_push_during_collection_survives(gc_cluster: ClusterProcesses) -> None:
    """The same layer is pushed again, repeatedly, while collections run back to back:
    its chunks and recipe are garbage (stamped) when the pushes start."""
    api = await ClusterNode.connect(gc_cluster.config)
    try:
        data = random_bytes(4 << 20, seed=74)
        digest = sha256(data)
        prefix = f"gc{uuid.uuid4().hex[:8]}"
        await write_blob(api, f"{prefix}/old", digest, pieces(data))
        await api.unlink_blob(f"{prefix}/old", digest)
        await gc_json(gc_cluster)
        await asyncio.sleep(GRACE + 0.2)
        done = asyncio.Event()

        async def collect_until_done() -> int:
            # In this process: forking a `shoal gc` while this process's gRPC threads
            # are busy pushing once crashed the child before it ran (SIGSEGV).
            runs = 0
            while not done.is_set() or runs < 3:
                report = await collect_cluster(gc_cluster.config, dry_run=False,
                                               deadline=60.0)
                assert set(report.members) == {m.id for m in gc_cluster.config.members}
                runs += 1
            return runs

        collector = asyncio.create_task(collect_until_done())
        try:
            deadline = time.monotonic() + 3 * GRACE
            n = 0
            while time.monotonic() < deadline:
                await write_blob(api, f"{prefix}/new{n}", digest, pieces(data, 256 << 10))
                assert await collect(api.read_blob(digest)) == data
                n += 1
        finally:
            done.set()
            assert await collector >= 3
        await asyncio.sleep(GRACE + 0.2)
        await gc_json(gc_cluster)
        await gc_json(gc_cluster)
        assert await recipe_copies(gc_cluster, digest) == 2
        assert await collect(api.read_blob(digest)) == data
        code, out, err = await shoal_gc(gc_cluster, "--dry-run")  # the table, for people
        assert code == 0, err
        assert "total" in out and all(m.id in out for m in gc_cluster.config.members)
    finally:
        await api.close()


async def test_deletes_through_a_gateway_are_reclaimed(gc_cluster: ClusterProcesses,
                                                       scratch: Path) -> None:
    """The OCI API end to end: a manifest and its blobs deleted over HTTP go from every
    member; a layer another repository still links keeps every chunk."""
    gateway, base = start_gateway(gc_cluster, scratch / "gateway.log")
    api = await ClusterNode.connect(gc_cluster.config)
    try:
        repo, other = f"gc{uuid.uuid4().hex[:8]}/web", f"gc{uuid.uuid4().hex[:8]}/keep"
        layer, shared = random_bytes(2 << 20, seed=91), random_bytes(1 << 20, seed=92)
        config = b'{"architecture":"amd64","os":"linux"}'
        for name, blob in ((repo, layer), (repo, shared), (repo, config), (other, shared)):
            status, _, body = await asyncio.to_thread(
                http, "POST", f"{base}/v2/{name}/blobs/uploads/?digest={sha256(blob)}",
                blob, {"Content-Type": "application/octet-stream"})
            assert status == 201, body
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": sha256(blob), "size": len(blob)}
                       for blob in (layer, shared)]}).encode()
        status, _, body = await asyncio.to_thread(
            http, "PUT", f"{base}/v2/{repo}/manifests/v1", manifest,
            {"Content-Type": OCI})
        assert status == 201, body
        layer_ids = list(dict.fromkeys((await api.get_recipe(sha256(layer))).ids))
        shared_ids = list(dict.fromkeys((await api.get_recipe(sha256(shared))).ids))

        status, _, _ = await asyncio.to_thread(
            http, "DELETE", f"{base}/v2/{repo}/manifests/{sha256(manifest)}")
        assert status == 202
        for blob in (layer, shared, config):
            status, _, _ = await asyncio.to_thread(
                http, "DELETE", f"{base}/v2/{repo}/blobs/{sha256(blob)}")
            assert status == 202
        for _ in range(3):  # stamp the recipes; delete them, stamp their chunks; sweep
            await gc_json(gc_cluster)
            await asyncio.sleep(GRACE + 0.2)
        await gc_json(gc_cluster)
        assert sum((await held(gc_cluster, layer_ids)).values()) == 0
        assert sum((await held(gc_cluster, shared_ids)).values()) == 2 * len(shared_ids)
        status, _, got = await asyncio.to_thread(
            http, "GET", f"{base}/v2/{other}/blobs/{sha256(shared)}")
        assert status == 200 and got == shared
        status, _, _ = await asyncio.to_thread(
            http, "GET", f"{base}/v2/{repo}/blobs/{sha256(layer)}")
        assert status == 404
    finally:
        await api.close()
        gateway.terminate()
        gateway.wait(30)


async def test_members_collect_on_a_schedule(scratch: Path) -> None:
    """With --gc-interval, one member (the first live one in rendezvous order) runs the
    collection across the cluster by itself: an unlinked blob's chunks leave every
    member, a linked one stays."""
    with running_cluster(scratch, n=3, replicas=2, repair_interval=3600.0,
                         node_args=["--gc-grace", "2s", "--gc-interval", "1s"]) as cluster:
        api = await ClusterNode.connect(cluster.config)
        try:
            doomed, kept = random_bytes(2 << 20, seed=81), random_bytes(1 << 20, seed=82)
            await write_blob(api, "sched/app", sha256(doomed), pieces(doomed))
            await write_blob(api, "sched/app", sha256(kept), pieces(kept))
            ids = list(dict.fromkeys((await api.get_recipe(sha256(doomed))).ids))
            await api.unlink_blob("sched/app", sha256(doomed))
            deadline = time.monotonic() + 120
            while sum((await held(cluster, ids)).values()) > 0:
                assert time.monotonic() < deadline, cluster.logs()
                await asyncio.sleep(0.5)
            assert await collect(api.read_blob(sha256(kept))) == kept
            coordinators = [mid for mid, node in cluster.nodes.items()
                            if "coordinated a garbage collection" in node.log()]
            # Members started a moment apart may each have seen itself first while the
            # others were not up yet; a repeated run is only wasted work.
            assert coordinators, cluster.logs()
        finally:
            await api.close()
