"""Retention carried out over every NodeAPI implementation (in-process, a node process,
a three-member cluster): the dry run names what the real run then deletes, and what a
kept manifest needs stays."""

from __future__ import annotations

import json
import re
import uuid

from nodetest import sha256

from node.api import ManifestRecord, NodeAPI
from node.retention.plan import MANIFEST, TAG
from node.retention.policy import RetentionPolicy
from node.retention.run import apply_plan, run_retention

OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
DAY = 86_400_000


def image(label: str, subject: str = "") -> ManifestRecord:
    body: dict[str, object] = {"schemaVersion": 2, "mediaType": OCI, "label": label}
    if subject:
        body["subject"] = {"mediaType": OCI, "digest": subject, "size": 1}
    content = json.dumps(body).encode()
    return ManifestRecord(sha256(content), OCI, content, subject)


def index(*children: ManifestRecord) -> ManifestRecord:
    content = json.dumps({"schemaVersion": 2, "mediaType": INDEX, "manifests": [
        {"mediaType": OCI, "digest": c.digest, "size": len(c.content)} for c in children]}
    ).encode()
    return ManifestRecord(sha256(content), INDEX, content)


async def test_dry_run_and_real_run_agree_and_needed_manifests_stay(api: NodeAPI) -> None:
    prefix = f"ret{uuid.uuid4().hex[:10]}"
    repo = f"{prefix}/app"
    policy = RetentionPolicy((f"{prefix}/*",), keep_last=2, keep_tags=(re.compile(r"v\d+"),),
                             untagged_older_than_ms=DAY, untagged_older_than="1d")
    v1, dev1, dev2 = image("v1"), image("dev1"), image("dev2")
    amd64, arm64 = image("amd64"), image("arm64")
    multi = index(amd64, arm64)
    newest = image("newest")
    signature = image("sig", subject=newest.digest)
    sbom_of_dev1 = image("sbom", subject=dev1.digest)
    stray = image("stray")
    await api.put_manifest(repo, v1, ["v1"])
    await api.put_manifest(repo, dev1, ["dev-1"])
    await api.put_manifest(repo, dev2, ["dev-2"])
    await api.put_manifest(repo, amd64)
    await api.put_manifest(repo, arm64)
    await api.put_manifest(repo, multi, ["dev-4"], [amd64.digest, arm64.digest])
    await api.put_manifest(repo, newest, ["dev-5"])
    await api.put_manifest(repo, signature)
    await api.put_manifest(repo, sbom_of_dev1)
    await api.put_manifest(repo, stray)
    # Another repository the policy does not govern is left alone.
    await api.put_manifest(f"{prefix}x/app", stray)
    entries = await api.list_manifests(repo)
    now = max(e.pushed_at_ms for e in entries) + 2 * DAY

    dry = await run_retention(api, [policy], now, dry_run=True)
    expected = {(TAG, "dev-1"), (TAG, "dev-2"), (MANIFEST, dev1.digest),
                (MANIFEST, dev2.digest), (MANIFEST, sbom_of_dev1.digest),
                (MANIFEST, stray.digest)}
    assert {(a.kind, a.target) for a in dry.actions} == expected
    assert dry.repositories == 1 and not dry.skipped
    assert await api.list_manifests(repo) == entries  # a dry run changes nothing

    real = await run_retention(api, [policy], now)
    assert real.actions == dry.actions and not real.skipped
    left = {e.digest: e.tags for e in await api.list_manifests(repo)}
    assert left == {v1.digest: ("v1",), amd64.digest: (), arm64.digest: (),
                    multi.digest: ("dev-4",), newest.digest: ("dev-5",),
                    signature.digest: ()}
    assert await api.list_tags(repo) == ["dev-4", "dev-5", "v1"]
    assert await api.get_manifest(repo, "dev-1") is None
    assert [d.digest for d in await api.list_referrers(repo, newest.digest)] == [
        signature.digest]
    assert len(await api.list_manifests(f"{prefix}x/app")) == 1

    again = await run_retention(api, [policy], now)
    assert again.actions == [] and again.skipped == []


async def test_a_tag_pushed_again_since_the_plan_is_skipped(api: NodeAPI) -> None:
    prefix = f"ret{uuid.uuid4().hex[:10]}"
    repo = f"{prefix}/app"
    old, new = image("old"), image("new")
    await api.put_manifest(repo, old, ["a"])
    await api.put_manifest(repo, new, ["b"])
    policy = RetentionPolicy((repo,), keep_last=1)
    now = max(e.pushed_at_ms for e in await api.list_manifests(repo))
    dry = await run_retention(api, [policy], now, dry_run=True)
    assert [(a.kind, a.target) for a in dry.actions] == [(TAG, "a")]
    # Pushed again: `a` is now the newest tag, so the real run keeps it and lets `b` go.
    await api.put_manifest(repo, old, ["a"])
    real = await run_retention(api, [policy], now)
    assert [(a.kind, a.target) for a in real.actions] == [(TAG, "b")]
    assert await api.list_tags(repo) == ["a"]


async def test_what_changed_since_the_dry_run_is_skipped(api: NodeAPI) -> None:
    prefix = f"ret{uuid.uuid4().hex[:10]}"
    repo = f"{prefix}/app"
    tagged, untagged, child = image("tagged"), image("untagged"), image("child")
    await api.put_manifest(repo, tagged, ["old"])
    await api.put_manifest(repo, untagged)
    await api.put_manifest(repo, child)
    await api.put_manifest(repo, image("newer"), ["new"])
    policies = [RetentionPolicy((repo,), keep_last=1, untagged_older_than_ms=DAY,
                                untagged_older_than="1d")]
    now = max(e.pushed_at_ms for e in await api.list_manifests(repo)) + 2 * DAY
    dry = await run_retention(api, policies, now, dry_run=True)
    assert {(a.kind, a.target) for a in dry.actions} == {
        (TAG, "old"), (MANIFEST, tagged.digest), (MANIFEST, untagged.digest),
        (MANIFEST, child.digest)}
    # Since the dry run: `untagged` got a tag, and a new index lists `child`.
    await api.put_manifest(repo, untagged, ["pinned"])
    await api.put_manifest(repo, index(child), ["new"], [child.digest])
    real = await apply_plan(api, policies, now, dry.actions)
    assert {(a.kind, a.target) for a in real.actions} == {
        (TAG, "old"), (MANIFEST, tagged.digest)}
    assert {(a.kind, a.target) for a in real.skipped} == {
        (MANIFEST, untagged.digest), (MANIFEST, child.digest)}
    assert await api.get_manifest(repo, "pinned") is not None
    assert await api.get_manifest(repo, child.digest) is not None
