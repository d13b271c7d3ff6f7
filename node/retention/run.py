"""Carrying retention out over any NodeAPI: a LocalNode, a node process or a cluster.

Deletes go through `delete_tag` and `delete_manifest`, stamped writes that replicate like
any other in a cluster. They free no bytes by themselves: garbage collection reclaims the
blobs nothing refers to any more (README: Garbage collection).

A real run carries out the plan a dry run would print, re-checking each item first: a tag
is deleted only if it still names the manifest it named when planned, pushed at the same
stamp; a manifest only if a fresh plan still lets it go (so a tag, an index or a push
that arrived since keeps it) and its stamp is unchanged. What changed is reported as
skipped, not deleted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from node.api import ManifestEntry, NodeAPI
from node.retention.plan import MANIFEST, TAG, Action, plan_repository
from node.retention.policy import RetentionPolicy, policy_for

log = logging.getLogger(__name__)

INDEX_TYPES = frozenset({
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
})
PAGE = 1000


@dataclass(slots=True)
class RetentionReport:
    dry_run: bool
    repositories: int = 0                   # governed by a policy and looked at
    actions: list[Action] = field(default_factory=list)   # deleted, or would be
    skipped: list[Action] = field(default_factory=list)   # changed since planned


async def _repositories(api: NodeAPI) -> list[str]:
    names: list[str] = []
    while page := await api.list_repositories(names[-1] if names else "", PAGE):
        names += page
        if len(page) < PAGE:
            break
    return names


async def _children(api: NodeAPI, repository: str, entries: Sequence[ManifestEntry]
                    ) -> dict[str, list[str]]:
    """The manifests each index of `repository` lists, read from the index's own bytes."""
    out: dict[str, list[str]] = {}
    for e in entries:
        if e.media_type not in INDEX_TYPES:
            continue
        record = await api.get_manifest(repository, e.digest)
        if record is None:
            continue
        try:
            listed = json.loads(record.content).get("manifests") or []
            out[e.digest] = [str(m["digest"]) for m in listed if isinstance(m, dict)
                             and "digest" in m]
        except (ValueError, AttributeError):
            # The gateway checked it on push; an unreadable one protects nothing.
            log.warning("index %s in %s cannot be read", e.digest, repository)
    return out


async def _plan(api: NodeAPI, repository: str, policy: RetentionPolicy, now_ms: int
                ) -> tuple[list[ManifestEntry], list[Action]]:
    entries = await api.list_manifests(repository)
    children = await _children(api, repository, entries)
    return entries, plan_repository(repository, entries, policy, now_ms, children)


async def _apply(api: NodeAPI, repository: str, policy: RetentionPolicy, now_ms: int,
                 planned: list[Action], report: RetentionReport) -> None:
    entries = {e.digest: e for e in await api.list_manifests(repository)}
    for action in (a for a in planned if a.kind == TAG):
        current = entries.get(action.digest)
        if (current is None or current.stamp != action.stamp
                or action.target not in current.tags):
            report.skipped.append(action)
        elif await api.delete_tag(repository, action.target):
            report.actions.append(action)
        else:
            report.skipped.append(action)
    manifests = [a for a in planned if a.kind == MANIFEST]
    if not manifests:
        return
    _, fresh = await _plan(api, repository, policy, now_ms)
    still = {(a.target, a.stamp) for a in fresh if a.kind == MANIFEST}
    for action in manifests:
        if (action.target, action.stamp) in still and await api.delete_manifest(
                repository, action.target):
            report.actions.append(action)
        else:
            report.skipped.append(action)


async def run_retention(api: NodeAPI, policies: list[RetentionPolicy], now_ms: int,
                        dry_run: bool = False) -> RetentionReport:
    """Apply `policies` to every repository they govern, as of `now_ms` (injected, so
    tests and a dry run followed by a real run see the same moment)."""
    report = RetentionReport(dry_run=True)
    for repository in await _repositories(api):
        policy = policy_for(policies, repository)
        if policy is None:
            continue
        report.repositories += 1
        _, planned = await _plan(api, repository, policy, now_ms)
        report.actions += planned
    if dry_run:
        return report
    return await apply_plan(api, policies, now_ms, report.actions, report.repositories)


async def apply_plan(api: NodeAPI, policies: list[RetentionPolicy], now_ms: int,
                     planned: list[Action], repositories: int = 0) -> RetentionReport:
    """Carry out `planned` (a dry run's actions), re-checking each item."""
    report = RetentionReport(dry_run=False, repositories=repositories)
    by_repository: dict[str, list[Action]] = {}
    for action in planned:
        by_repository.setdefault(action.repository, []).append(action)
    for repository, actions in by_repository.items():
        policy = policy_for(policies, repository)
        if policy is None:
            report.skipped += actions
            continue
        await _apply(api, repository, policy, now_ms, actions, report)
    return report
