"""The edge's upload cap: a token bucket (on a clock of the test's own), and a real edge
serving a peer no faster than its --upload-limit."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from nodetest import Clock
from swarmtest import Edge, Origin, stopping

from node.swarm.ratelimit import TokenBucket

MiB = 1 << 20


def test_a_burst_goes_at_once_and_the_rest_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, burst=3000, clock=clock)
    assert bucket.delay(2000) == 0
    assert bucket.delay(1000) == 0
    assert bucket.delay(500) == pytest.approx(0.5)   # in debt: half a second's worth
    clock.now += 0.5
    assert bucket.delay(1000) == pytest.approx(1.0)


def test_idle_time_refills_up_to_the_burst_only() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, burst=3000, clock=clock)
    bucket.delay(3000)
    clock.now += 60
    assert bucket.delay(3000) == 0
    assert bucket.delay(1) > 0


def test_a_message_larger_than_the_burst_is_sent_whole_after_its_wait() -> None:
    clock = Clock()
    bucket = TokenBucket(1000, burst=1000, clock=clock)
    assert bucket.delay(5000) == pytest.approx(4.0)


def test_the_default_burst_is_at_least_one_message() -> None:
    assert TokenBucket(10).burst == MiB
    assert TokenBucket(100 * MiB).burst == 10 * MiB
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_an_edge_serves_peers_no_faster_than_its_upload_limit(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        slow = Edge(scratch, "slow", origin, "--upload-limit", "1M")
        other = Edge(scratch, "other", origin)
        with stopping(slow, other):
            data = os.urandom(6 * MiB)
            digest = slow.push("lib/app", data)
            assert slow.pull("lib/app", digest) == digest
            started = time.monotonic()
            assert other.pull("lib/app", digest) == digest
            took = time.monotonic() - started
            from_slow = other.received("peer")
            assert from_slow >= 2 * MiB  # the origin sent it to the edge holding it all
            # One burst (a message) at once, the rest at 1 MiB/s at most.
            assert took >= (from_slow - MiB) / MiB * 0.95
