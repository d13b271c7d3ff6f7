"""One blob's pull on an edge: what it does when every source fails, and how many streams
it opens to each source."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from nodetest import encode, random_bytes, recipe_of, sha256
from swarmtest import free_port

from node.errors import Unavailable
from node.swarm.directory import StaticOwners
from node.swarm.edge_swarm import EdgeSwarm
from node.swarm.fetcher import Download
from node.swarm.sources import PER_OWNER, PER_PEER


async def test_a_pull_from_an_unreachable_origin_fails(scratch: Path) -> None:
    data = random_bytes(300_000, seed=9)
    recipe = recipe_of(encode(data))
    nowhere = f"127.0.0.1:{free_port()}"
    swarm = EdgeSwarm(scratch / "cache", 1 << 30, StaticOwners([nowhere]), "", p2p=False)
    await swarm.open()
    try:
        with pytest.raises(Unavailable):
            async for _ in swarm.read(sha256(data), recipe, 0, len(data)):
                pass
        assert swarm.counters.source_failures >= 8
    finally:
        await swarm.close()


async def test_one_scheduling_pass_keeps_to_the_streams_per_source(scratch: Path) -> None:
    """Streams are counted as they are started, not when their tasks first run: one pass
    over a window of missing pieces opens PER_PEER streams to the one peer holding them
    and PER_OWNER to the owner, not a stream per piece (it once sent all twelve of a
    pull's first fetches to the owner, which answered most of them busy)."""
    data = random_bytes(3_000_000, seed=11)
    recipe = recipe_of(encode(data))
    origin, peer = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    swarm = EdgeSwarm(scratch / "cache", 1 << 30, StaticOwners([origin]), "me:1",
                      piece_bytes=64 << 10)
    await swarm.open()
    download = Download(swarm, sha256(data), recipe)
    try:
        assert len(download.pieces) > PER_PEER + PER_OWNER
        download._view = {peer: (1 << len(recipe)) - 1}
        download._start_fetches(time.monotonic())
        assert dict(swarm.sources.inflight) == {peer: PER_PEER, origin: PER_OWNER}
        assert len(download._fetches) == PER_PEER + PER_OWNER
    finally:
        await download.close()
        await swarm.close()
    assert not swarm.sources.inflight  # every stream counted as ended, cancelled or not
