"""An edge's cache across its life: when full, pulls still return the right bytes, the
least recently used chunks go, and the origin stops listing the edge for what it evicted;
across a restart, what it held is still there."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from swarmtest import Edge, Origin, free_port, stopping

from node.swarm.client import SwarmClient

MiB = 1 << 20


def held_by(origin: Origin, edge: Edge, digest: str) -> int:
    """How many chunks of `digest` the origin lists `edge` as holding."""
    async def ask() -> int:
        client = SwarmClient()
        try:
            found = await client.holders(origin.target, digest, "")
        finally:
            await client.close()
        return sum(bin(bits).count("1") for address, bits in found.holders
                   if address == edge.peer)

    return asyncio.run(ask())


def test_a_full_cache_evicts_and_still_serves_pulls(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edge = Edge(scratch, "edge", origin, "--cache-size", "10M")
        with stopping(edge):
            first = os.urandom(8 * MiB)
            second = os.urandom(8 * MiB)
            a = edge.push("lib/a", first)
            b = edge.push("lib/b", second)
            assert edge.pull("lib/a", a) == a
            deadline = time.monotonic() + 20
            while held_by(origin, edge, a) == 0:
                assert time.monotonic() < deadline, "never announced"
                time.sleep(0.1)
            listed = held_by(origin, edge, a)

            assert edge.pull("lib/b", b) == b
            assert edge.counter("shoal_edge_evicted_bytes_total") > 0
            assert edge.counter("shoal_edge_cache_bytes") <= 10 * MiB
            # Eviction is withdrawn from the origin's holder list.
            deadline = time.monotonic() + 20
            while held_by(origin, edge, a) >= listed:
                assert time.monotonic() < deadline, "eviction never withdrawn"
                time.sleep(0.1)

            # Evicted chunks are fetched again; the pull is whole and right.
            assert edge.pull("lib/a", a) == a
            assert edge.pull("lib/b", b) == b
            assert edge.counter("shoal_edge_cache_bytes") <= 10 * MiB


def pulled_and_listed(origin: Origin, edge: Edge) -> str:
    """Push a blob through `edge`, pull it back, and wait until the origin lists `edge`
    as holding it; returns its digest."""
    digest = edge.push("lib/a", os.urandom(2 * MiB))
    assert edge.pull("lib/a", digest) == digest
    deadline = time.monotonic() + 20
    while held_by(origin, edge, digest) == 0:
        assert time.monotonic() < deadline, "never announced"
        time.sleep(0.1)
    return digest


def test_an_edge_that_stops_is_no_longer_listed(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edge = Edge(scratch, "edge", origin)
        with stopping(edge):
            digest = pulled_and_listed(origin, edge)
        assert edge.proc.returncode == 0
        assert held_by(origin, edge, digest) == 0  # it said it was leaving


def test_an_edge_restarted_after_a_crash_is_not_listed_for_what_it_lost(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edge = Edge(scratch, "edge", origin)
        with stopping(edge):
            digest = pulled_and_listed(origin, edge)
            edge.kill()
        shutil.rmtree(scratch / "edge")  # its disk lost with it
        # Its lease is alive, but its first announce replaces everything it was listed for.
        again = Edge(scratch, "edge", origin, like=edge)
        with stopping(again):
            deadline = time.monotonic() + 20
            while held_by(origin, again, digest) > 0:
                assert time.monotonic() < deadline, "still listed after a restart"
                time.sleep(0.1)
            assert again.pull("lib/a", digest) == digest


def test_an_edge_restarted_serves_from_the_cache_it_had(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edge = Edge(scratch, "edge", origin)
        with stopping(edge):
            data = os.urandom(12 * MiB)
            digest = edge.push("lib/a", data)
            assert edge.pull("lib/a", digest) == digest
        again = Edge(scratch, "edge", origin, like=edge)
        with stopping(again):
            # A holder again from its first announce, before any pull.
            deadline = time.monotonic() + 20
            while held_by(origin, again, digest) == 0:
                assert time.monotonic() < deadline, "never announced again"
                time.sleep(0.1)
            assert again.pull("lib/a", digest) == digest
            assert again.received("cache") >= len(data)
            assert again.received("owner") + again.received("peer") == 0


def test_a_second_edge_on_the_same_folder_is_refused(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edge = Edge(scratch, "edge", origin)
        with stopping(edge):
            second = subprocess.run(
                [sys.executable, "-m", "shoal", "edge", "--data", str(scratch / "edge"),
                 "--listen", f"127.0.0.1:{free_port()}", "--peer-listen",
                 f"127.0.0.1:{free_port()}", "--origin", origin.target],
                capture_output=True, text=True, timeout=60)
            assert second.returncode == 1
            assert "in use by another edge" in second.stderr
            assert "Traceback" not in second.stderr
            assert edge.proc.poll() is None
