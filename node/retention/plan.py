"""What a retention policy lets go in one repository: a pure function of its manifests.

1. Tags: with `keep_last` or `keep_tags`, a tag stays if it is among the `keep_last` most
   recently pushed (by its manifest's push stamp, ties by name) or fully matches a
   `keep_tags` expression; every other tag goes.
2. Manifests that still have a tag stay. With `untagged_older_than`, an untagged one
   (including one whose tags all went in step 1) pushed longer ago than that goes;
   without it, no manifest goes.
3. Nothing a kept manifest needs goes: the manifests a kept index lists, and the
   referrers whose subject is kept, recursively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from node.api import ManifestEntry
from node.retention.policy import RetentionPolicy

TAG = "tag"
MANIFEST = "manifest"


@dataclass(frozen=True, slots=True)
class Action:
    repository: str
    kind: str          # TAG or MANIFEST
    target: str        # the tag, or the manifest's digest
    digest: str        # the manifest (a tag's: the one it points at)
    stamp: int         # the manifest's push stamp when planned: a re-push cancels the action
    reason: str


def _tag_reason(policy: RetentionPolicy) -> str:
    parts = []
    if policy.keep_last is not None:
        parts.append(f"not among the last {policy.keep_last} tags")
    if policy.keep_tags:
        parts.append("matches no keep_tags pattern")
    return " and ".join(parts)


def plan_repository(repository: str, entries: Sequence[ManifestEntry], policy: RetentionPolicy,
                    now_ms: int, children: Mapping[str, Sequence[str]]) -> list[Action]:
    """The tags and manifests of `repository` that `policy` lets go, tags first.
    `children` maps an index's digest to the manifests it lists."""
    by_digest = {e.digest: e for e in entries}
    tagged = [(tag, e) for e in entries for tag in e.tags]
    kept_tags: set[tuple[str, str]] = set()
    if not policy.prunes_tags:
        kept_tags = {(tag, e.digest) for tag, e in tagged}
    else:
        newest_first = sorted(tagged, key=lambda te: (-te[1].stamp, te[0]))
        for rank, (tag, e) in enumerate(newest_first):
            if ((policy.keep_last is not None and rank < policy.keep_last)
                    or any(p.fullmatch(tag) for p in policy.keep_tags)):
                kept_tags.add((tag, e.digest))
    actions = [Action(repository, TAG, tag, e.digest, e.stamp, _tag_reason(policy))
               for tag, e in sorted(tagged) if (tag, e.digest) not in kept_tags]

    still_tagged = {digest for _, digest in kept_tags}
    doomed: set[str] = set()
    if policy.untagged_older_than_ms is not None:
        cutoff = now_ms - policy.untagged_older_than_ms
        doomed = {e.digest for e in entries
                  if e.digest not in still_tagged and e.pushed_at_ms < cutoff}
    kept = _needed(set(by_digest) - doomed, entries, children)
    for digest in sorted(doomed - kept):
        e = by_digest[digest]
        actions.append(Action(repository, MANIFEST, digest, digest, e.stamp,
                              f"untagged and older than {policy.untagged_older_than}"))
    return actions


def _needed(roots: set[str], entries: Sequence[ManifestEntry],
            children: Mapping[str, Sequence[str]]) -> set[str]:
    """`roots` and everything they need: an index's children, a subject's referrers."""
    referrers: dict[str, list[str]] = {}
    for e in entries:
        if e.subject:
            referrers.setdefault(e.subject, []).append(e.digest)
    kept = set(roots)
    todo = list(roots)
    while todo:
        digest = todo.pop()
        for needed in (*children.get(digest, ()), *referrers.get(digest, ())):
            if needed not in kept:
                kept.add(needed)
                todo.append(needed)
    return kept
