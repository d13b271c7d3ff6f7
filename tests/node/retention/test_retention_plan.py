"""The retention planner and policy file, as pure functions: entries made by hand, time
given, nothing stored."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.api import ManifestEntry
from node.hlc import COUNTER_BITS
from node.retention.plan import MANIFEST, TAG, plan_repository
from node.retention.policy import RetentionPolicy, load, parse_duration_ms, policy_for

DAY = 86_400_000
NOW = 1_800_000_000_000
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"


def entry(name: str, age_days: float, tags: tuple[str, ...] = (), subject: str = "",
          media_type: str = OCI) -> ManifestEntry:
    stamp = int(NOW - age_days * DAY) << COUNTER_BITS
    return ManifestEntry(f"sha256:{name}", media_type, stamp, tags, subject, 100)


def gone(actions: list[object]) -> set[tuple[str, str]]:
    return {(a.kind, a.target) for a in actions}  # type: ignore[attr-defined]


def policy(keep_last: int | None = None, keep_tags: tuple[str, ...] = (),
           untagged_older_than: str | None = None) -> RetentionPolicy:
    return RetentionPolicy(("*",), keep_last, tuple(re.compile(p) for p in keep_tags),
                           None if untagged_older_than is None
                           else parse_duration_ms(untagged_older_than),
                           untagged_older_than or "")


def test_keep_last_n_by_push_time_and_their_manifests_go_when_old() -> None:
    entries = [entry("a", 10, ("t1",)), entry("b", 5, ("t2",)), entry("c", 1, ("t3", "t4"))]
    actions = plan_repository("r", entries, policy(keep_last=2), NOW, {})
    # c's two tags are the most recent; untagged manifests stay without the age rule.
    assert gone(actions) == {(TAG, "t1"), (TAG, "t2")}
    assert all("last 2" in a.reason for a in actions)
    actions = plan_repository("r", entries, policy(keep_last=2, untagged_older_than="3d"),
                              NOW, {})
    assert gone(actions) == {(TAG, "t1"), (TAG, "t2"), (MANIFEST, "sha256:a"),
                             (MANIFEST, "sha256:b")}
    assert [a.kind for a in actions] == [TAG, TAG, MANIFEST, MANIFEST]  # tags first


def test_ties_in_push_time_are_broken_by_tag_name() -> None:
    entries = [entry("a", 1, ("b", "a", "c"))]
    assert gone(plan_repository("r", entries, policy(keep_last=1), NOW, {})) == {
        (TAG, "b"), (TAG, "c")}


def test_keep_tags_patterns_match_the_whole_tag() -> None:
    entries = [entry("a", 30, ("v1",)), entry("b", 20, ("v1.2.3",)),
               entry("c", 10, ("v1-rc",)), entry("d", 1, ("latest",))]
    actions = plan_repository("r", entries, policy(keep_tags=(r"v\d+(\.\d+)*",)), NOW, {})
    assert gone(actions) == {(TAG, "v1-rc"), (TAG, "latest")}
    assert all(a.reason == "matches no keep_tags pattern" for a in actions)
    both = plan_repository("r", entries, policy(keep_last=1, keep_tags=("v1",)), NOW, {})
    assert gone(both) == {(TAG, "v1.2.3"), (TAG, "v1-rc")}


def test_without_tag_rules_tags_stay_and_only_old_untagged_manifests_go() -> None:
    entries = [entry("old", 10), entry("young", 1), entry("tagged", 100, ("x",))]
    actions = plan_repository("r", entries, policy(untagged_older_than="7d"), NOW, {})
    assert gone(actions) == {(MANIFEST, "sha256:old")}
    assert actions[0].reason == "untagged and older than 7d"
    assert plan_repository("r", entries, policy(), NOW, {}) == []


def test_children_of_a_kept_index_stay_and_those_of_a_deleted_one_go() -> None:
    entries = [entry("amd64", 30), entry("arm64", 30), entry("index", 30, ("v1",), "", INDEX),
               entry("old-amd64", 30), entry("old-index", 30, (), "", INDEX)]
    children = {"sha256:index": ["sha256:amd64", "sha256:arm64"],
                "sha256:old-index": ["sha256:old-amd64", "sha256:amd64"]}
    actions = plan_repository("r", entries, policy(untagged_older_than="1d"), NOW, children)
    assert gone(actions) == {(MANIFEST, "sha256:old-index"), (MANIFEST, "sha256:old-amd64")}


def test_an_index_kept_by_age_protects_its_children() -> None:
    entries = [entry("child", 30), entry("index", 1, (), "", INDEX)]
    actions = plan_repository("r", entries, policy(untagged_older_than="7d"), NOW,
                              {"sha256:index": ["sha256:child"]})
    assert actions == []


def test_referrers_of_kept_manifests_stay_recursively() -> None:
    entries = [entry("image", 30, ("v1",)), entry("sig", 30, (), "sha256:image"),
               entry("sig-of-sig", 30, (), "sha256:sig"), entry("gone", 30, ("dev",)),
               entry("sbom-of-gone", 30, (), "sha256:gone")]
    actions = plan_repository("r", entries,
                              policy(keep_tags=("v.*",), untagged_older_than="1d"), NOW, {})
    assert gone(actions) == {(TAG, "dev"), (MANIFEST, "sha256:gone"),
                             (MANIFEST, "sha256:sbom-of-gone")}


def test_the_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "retention.toml"
    path.write_text('[[policy]]\nrepositories = ["team/*"]\nkeep_last = 3\n'
                    'keep_tags = [\'v\\d+\', "latest"]\nuntagged_older_than = "2w"\n\n'
                    '[[policy]]\nrepositories = ["*"]\nuntagged_older_than = "12h"\n')
    policies = load(path)
    team = policy_for(policies, "team/a/b")
    assert team is not None and team.keep_last == 3
    assert [p.pattern for p in team.keep_tags] == [r"v\d+", "latest"]
    assert team.untagged_older_than_ms == 14 * DAY
    other = policy_for(policies, "library/alpine")
    assert other is not None and other.untagged_older_than_ms == DAY // 2
    assert not other.prunes_tags
    assert policy_for(load(path)[:1], "teamx") is None


@pytest.mark.parametrize(("text", "complaint"), [
    ('[[policy]]\nkeep_last = 1\n', "repositories"),
    ('[[policy]]\nrepositories = ["a"]\nkeep_last = -1\n', "keep_last"),
    ('[[policy]]\nrepositories = ["a"]\nkeep_tags = ["("]\n', "keep_tags"),
    ('[[policy]]\nrepositories = ["a"]\nuntagged_older_than = "soon"\n', "duration"),
    ('[[policy]]\nrepositories = ["a"]\nkeep = 1\n', "unknown keys"),
    ('[[policies]]\nrepositories = ["a"]\n', "unknown keys"),
    ('[[policy]\n', "policy"),
])
def test_a_bad_policy_file_says_what_is_wrong(tmp_path: Path, text: str, complaint: str
                                              ) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=complaint):
        load(path)
