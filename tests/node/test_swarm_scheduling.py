"""Pieces, source picking and announce batching: the pure parts of an edge's fetches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from node.recipe import Recipe
from node.swarm.announcer import Announcer
from node.swarm.client import SwarmClient
from node.swarm.directory import StaticOwners
from node.swarm.holders import Holding
from node.swarm.pieces import plan
from node.swarm.sources import PER_PEER, Sources, rarity


def recipe(lengths: list[int]) -> Recipe:
    return Recipe([i.to_bytes(32, "big") for i in range(len(lengths))], lengths)


def test_pieces_are_runs_of_whole_chunks_of_about_the_piece_size() -> None:
    pieces = plan(recipe([300, 300, 300, 300, 300, 50]), piece_bytes=600)
    assert [(p.first, p.end, p.size) for p in pieces] == [(0, 2, 600), (2, 4, 600),
                                                         (4, 6, 350)]
    assert pieces[1].mask() == 0b1100
    pieces[1].next = 3
    assert pieces[1].mask() == 0b1000
    assert pieces[1].missing() == [(3).to_bytes(32, "big")]


def test_peers_holding_the_piece_come_before_owners() -> None:
    piece = plan(recipe([10] * 4), piece_bytes=20)[1]        # chunks 2 and 3
    view = {"full:1": 0b1111, "half:1": 0b0100, "other:1": 0b0011}
    sources = Sources()
    assert sources.pick(piece, view, ["origin:1"], 0.0) == ("full:1", False)
    assert rarity(piece, view) == 1
    sources.inflight["full:1"] = PER_PEER
    assert sources.pick(piece, view, ["origin:1"], 0.0) == ("origin:1", True)
    sources.inflight["full:1"] = 0
    sources.put_aside("full:1", 60)
    assert sources.pick(piece, view, ["origin:1"], 0.0) == ("origin:1", True)


def test_a_source_that_lacked_the_piece_is_not_asked_again_at_once() -> None:
    piece = plan(recipe([10] * 2), piece_bytes=100)[0]
    piece.avoid["a:1"] = 5.0
    assert Sources().pick(piece, {"a:1": 0b11}, [], 1.0) is None
    assert Sources().pick(piece, {"a:1": 0b11}, [], 6.0) == ("a:1", False)


class Recorder(SwarmClient):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[Holding], bool]] = []

    async def announce(self, owner: str, holder: str, holdings: Sequence[Holding],
                       full: bool = False, leaving: bool = False) -> bool:
        self.calls.append((owner, list(holdings), full))
        return not full and not holdings  # the first heartbeat: "who are you?"


async def test_changes_are_merged_and_a_forgotten_edge_resends_everything() -> None:
    client = Recorder()
    everything = [Holding("sha256:x", 8, gained=0b1111_1111)]
    announcer = Announcer(client, StaticOwners(["o:1"]), "me:1", lambda: everything, ["o:1"])
    await announcer._flush()  # first contact: the whole state, replacing any stale one
    assert client.calls == [("o:1", everything, True)]
    client.calls.clear()
    announcer.gained("sha256:x", 8, 0b0011)
    announcer.dropped([Holding("sha256:x", 8, dropped=0b0001)])
    announcer.gained("sha256:x", 8, 0b0100)
    await announcer._flush()
    assert client.calls == [("o:1", [Holding("sha256:x", 8, 0b0110, 0b0001)], False)]
    client.calls.clear()
    await announcer._flush()  # a heartbeat, answered "resync"
    assert client.calls == [("o:1", [], False), ("o:1", everything, True)]
    await asyncio.sleep(0)
