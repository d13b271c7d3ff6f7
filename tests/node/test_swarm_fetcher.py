"""A pull whose every source fails ends with an error the gateway can report, not a hang."""

from __future__ import annotations

from pathlib import Path

import pytest
from nodetest import encode, random_bytes, recipe_of, sha256
from swarmtest import free_port

from node.errors import Unavailable
from node.swarm.directory import StaticOwners
from node.swarm.edge_swarm import EdgeSwarm


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
