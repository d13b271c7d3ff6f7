"""Last-writer-wins metadata: replicas that saw the same writes agree, whatever order the
writes came in, and a delete is not undone by a replica that missed it."""

from __future__ import annotations

import itertools
from pathlib import Path

from nodetest import sha256

from node.hlc import HybridClock
from node.local import LocalNode
from node.registry import Registry

MEDIA = "application/vnd.oci.image.manifest.v1+json"


def test_the_clock_moves_past_what_it_sees() -> None:
    wall = [1000]
    clock = HybridClock(lambda: wall[0])
    a = clock.now()
    assert clock.now() > a
    clock.observe(a + (500 << 16))
    assert clock.now() > a + (500 << 16)
    wall[0] = 900  # the wall clock stepped back: stamps do not
    assert clock.now() > a


def _manifest(n: int) -> tuple[str, bytes]:
    content = f'{{"schemaVersion":2,"n":{n}}}'.encode()
    return sha256(content), content


def _apply(registry: Registry, op: tuple[str, int, int]) -> None:
    from node.api import ManifestRecord

    kind, n, stamp = op
    digest, content = _manifest(n)
    if kind == "put":
        registry.put_manifest("r", ManifestRecord(digest, MEDIA, content), ["latest"], [],
                              stamp)
    elif kind == "delete-tag":
        registry.delete_tag("r", "latest", stamp)
    else:
        registry.delete_manifest("r", digest, stamp)


def test_replicas_converge_whatever_the_order(tmp_path: Path) -> None:
    """Replicas that got the same writes in different orders agree once they have merged
    each other's entries (what repair does on every pass)."""
    ops = [("put", 1, 10 << 16), ("put", 2, 20 << 16), ("delete-tag", 0, 15 << 16),
           ("put", 3, 20 << 16), ("delete-manifest", 2, 30 << 16)]
    orders = [order for i, order in enumerate(itertools.permutations(ops)) if i % 11 == 0]
    replicas = [LocalNode(tmp_path / f"n{i}") for i in range(len(orders))]
    for node, order in zip(replicas, orders, strict=True):
        for op in order:
            _apply(node.registry, op)
    exports = [node.registry.export("r") for node in replicas]
    seen: set[tuple[str | None, tuple[str, ...], tuple[tuple[str, bytes, bytes], ...]]] = set()
    for node in replicas:
        for entries in exports:
            node.registry.merge(entries)
        found = node.registry.get_manifest("r", "latest")
        tags = node.registry.list_tags("r", "", 0)
        seen.add((found.digest if found else None, tuple(tags or ()),
                  tuple(node.registry.export("r"))))
        node.index.close()
    assert len(seen) == 1
    # Manifests 2 and 3 were tagged at the same stamp: the tie goes the same way on every
    # replica, and the later delete of manifest 2 takes the tag with it.
    digest, tags, _ = seen.pop()
    assert digest is None and tags == ()


def test_export_and_merge_bring_a_stale_replica_up_to_date(tmp_path: Path) -> None:
    a, b = LocalNode(tmp_path / "a"), LocalNode(tmp_path / "b")
    _apply(a.registry, ("put", 1, 10 << 16))
    for op in [("put", 1, 10 << 16), ("put", 2, 20 << 16), ("delete-manifest", 1, 25 << 16)]:
        _apply(b.registry, op)
    assert a.registry.merge(b.registry.export("r")) > 0
    assert b.registry.merge(a.registry.export("r")) == 0
    for node in (a, b):
        found = node.registry.get_manifest("r", "latest")
        assert found is not None and found.digest == _manifest(2)[0]
        assert node.registry.get_manifest("r", _manifest(1)[0]) is None
        node.index.close()
