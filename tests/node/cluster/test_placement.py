"""Rendezvous placement: stable, spread, and minimal movement when membership changes."""

from __future__ import annotations

import os
from collections import Counter

from node.cluster import placement
from node.cluster.config import Member

MEMBERS = [Member(f"node{i}", f"10.0.0.{i}:7400") for i in range(1, 6)]


def test_every_party_ranks_a_key_the_same_way() -> None:
    key = os.urandom(32)
    assert placement.rank(MEMBERS, placement.CHUNK, key) == \
        placement.rank(list(reversed(MEMBERS)), placement.CHUNK, key)


def test_owners_are_distinct_and_spread_evenly() -> None:
    firsts: Counter[str] = Counter()
    for _ in range(5000):
        owners = placement.owners(MEMBERS, placement.CHUNK, os.urandom(32), 3)
        assert len({m.id for m in owners}) == 3
        firsts[owners[0].id] += 1
    assert set(firsts) == {m.id for m in MEMBERS}
    assert max(firsts.values()) < 1.25 * min(firsts.values())


def test_adding_a_member_moves_only_what_it_now_owns() -> None:
    grown = [*MEMBERS, Member("node6", "10.0.0.6:7400")]
    moved = 0
    keys = [os.urandom(32) for _ in range(3000)]
    for key in keys:
        before = {m.id for m in placement.owners(MEMBERS, placement.CHUNK, key, 2)}
        after = {m.id for m in placement.owners(grown, placement.CHUNK, key, 2)}
        if before != after:
            moved += 1
            assert "node6" in after and len(before & after) == 1
    # The newcomer owns about 2/6 of the keys; nothing else moves.
    assert 0.2 < moved / len(keys) < 0.45


def test_removing_a_member_moves_only_what_it_owned() -> None:
    shrunk = MEMBERS[1:]
    for _ in range(2000):
        key = os.urandom(32)
        before = [m.id for m in placement.owners(MEMBERS, placement.CHUNK, key, 2)]
        after = [m.id for m in placement.owners(shrunk, placement.CHUNK, key, 2)]
        if MEMBERS[0].id not in before:
            assert before == after


def test_kinds_of_key_do_not_collide() -> None:
    ranks = {tuple(m.id for m in placement.rank(MEMBERS, kind, "library/alpine"))
             for kind in (placement.BLOB, placement.REPOSITORY, placement.UPLOAD)}
    assert len(ranks) > 1
