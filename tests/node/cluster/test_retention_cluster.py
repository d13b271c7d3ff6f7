"""`shoal retention --cluster FILE` against three real members (R=2): its deletes are
stamped writes that reach every replica of the repository."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from cluster.clustertest import ClusterProcesses
from nodetest import sha256

from node.api import ManifestRecord
from node.cluster import placement
from node.cluster.client import ClusterNode
from node.rpc.client import RemoteNode

OCI = "application/vnd.oci.image.manifest.v1+json"


def image(label: str, subject: str = "") -> ManifestRecord:
    content = json.dumps({"schemaVersion": 2, "label": label, "subject": subject}).encode()
    return ManifestRecord(sha256(content), OCI, content, subject)


def retention(policy: Path, cluster: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "shoal", "retention", "--json", "--policy",
                             str(policy), "--cluster", str(cluster), *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


async def test_retention_over_a_cluster(cluster_processes: ClusterProcesses,
                                        tmp_path: Path) -> None:
    prefix = f"ret{uuid.uuid4().hex[:10]}"
    repo = f"{prefix}/app"
    policy = tmp_path / "retention.toml"
    policy.write_text(f'[[policy]]\nrepositories = ["{prefix}/*"]\nkeep_last = 1\n'
                      'untagged_older_than = "0s"\n')
    old, new = image("old"), image("new")
    signature = image("sig", subject=new.digest)
    api = await ClusterNode.connect(cluster_processes.config)
    try:
        await api.put_manifest(repo, old, ["old"])
        await api.put_manifest(repo, new, ["new"])
        await api.put_manifest(repo, signature)

        dry = await asyncio.to_thread(retention, policy, cluster_processes.file, "--dry-run")
        assert {(a["kind"], a["target"]) for a in dry["actions"]} == {
            ("tag", "old"), ("manifest", old.digest)}
        real = await asyncio.to_thread(retention, policy, cluster_processes.file)
        assert real["actions"] == dry["actions"]
        assert await api.list_tags(repo) == ["new"]
        assert await api.get_manifest(repo, old.digest) is None
        assert await api.get_manifest(repo, signature.digest) == signature
    finally:
        await api.close()
    # Every owner of the repository's metadata holds the deletes, not only the first.
    owners = placement.owners(cluster_processes.config.members, placement.REPOSITORY, repo,
                              cluster_processes.config.replicas)
    for member in owners:
        node = RemoteNode(member.address)
        try:
            assert {e.digest for e in await node.list_manifests(repo)} == {
                new.digest, signature.digest}, member.id
        finally:
            await node.close()
