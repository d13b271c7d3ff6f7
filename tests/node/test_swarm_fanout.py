"""Edges pulling one blob at the same moment: real `shoal node` and `shoal edge` processes
on loopback. The origin's own counter of bytes served measures what the swarm saved."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cluster.clustertest import top_level_support
from swarmtest import HTTP_TIMEOUT, Edge, Origin, metric, pull_all, stopping

MiB = 1 << 20


def test_four_edges_pull_one_blob_and_the_origin_sends_it_about_once(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edges = [Edge(scratch, f"edge{i}", origin) for i in range(4)]
        with stopping(*edges):
            data = os.urandom(48 * MiB)
            digest = edges[0].push("lib/app", data)
            before = origin.sent()
            assert pull_all(edges, "lib/app", digest) == [digest] * 4
            sent = origin.sent() - before
            assert sent < 4 * len(data), f"origin sent {sent / len(data):.2f} copies"
            from_peers = sum(e.received("peer") for e in edges)
            from_owner = sum(e.received("owner") for e in edges)
            assert from_peers > 0
            assert from_peers + from_owner >= 4 * len(data)
            print(f"origin sent {sent / len(data):.2f} copies; peers {from_peers / MiB:.0f} MiB")

            # Pulled again: every byte from the local cache.
            assert edges[1].pull("lib/app", digest) == digest
            assert edges[1].received("cache") >= len(data)


def test_an_edge_killed_mid_transfer_costs_the_others_nothing(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edges = [Edge(scratch, f"edge{i}", origin) for i in range(4)]
        victim = edges[0]
        with stopping(*edges):
            data = os.urandom(64 * MiB)
            digest = edges[1].push("lib/app", data)

            def kill_once_it_holds_something() -> None:
                while victim.proc.poll() is None:
                    if victim.received("owner") + victim.received("peer") > 0:
                        victim.kill()
                        return
                    time.sleep(0.01)

            killer = threading.Thread(target=kill_once_it_holds_something)
            killer.start()
            results = pull_all(edges, "lib/app", digest)
            killer.join(60)
            assert victim.proc.poll() is not None
            assert results[1:] == [digest] * 3


def test_an_origin_restarting_mid_pull_is_waited_for(scratch: Path) -> None:
    """Killed while an edge streams a blob from it and back two seconds later, the origin
    costs the pull a pause, not a failure (a rolling restart of the node)."""
    origin = Origin(scratch)
    try:
        # A small cache keeps the pull's window at a few pieces, so most of the blob is
        # still to come from the origin when it goes.
        edge = Edge(scratch, "edge", origin, "--cache-size", str(16 * MiB))
        with stopping(edge):
            data = os.urandom(48 * MiB)
            digest = edge.push("lib/app", data)
            hasher = hashlib.sha256()
            with urllib.request.urlopen(edge.blob_url("lib/app", digest),
                                        timeout=HTTP_TIMEOUT) as reply:
                hasher.update(reply.read(8 * MiB))
                origin.kill()
                time.sleep(2.0)
                origin = Origin(scratch, like=origin)
                while piece := reply.read(MiB):
                    hasher.update(piece)
            # (http.client ends a short body quietly: the digest tells a truncated one.)
            assert "sha256:" + hasher.hexdigest() == digest
            assert edge.received("owner") >= len(data) - 8 * MiB
    finally:
        origin.stop()


def test_edges_of_an_origin_speak_mutual_tls(scratch: Path) -> None:
    """`--node-cert/--node-key/--node-ca` on edges of a TLS origin: pushes, pulls and
    peer-to-peer transfers all go over mutual TLS; an edge without a certificate gets
    nothing from that origin."""
    pki = top_level_support().make_pki(scratch)
    # One certificate (for 127.0.0.1) for the origin and the edges, as server and client.
    files = [str(pki["server_cert"]), str(pki["server_key"]), str(pki["ca"])]
    origin = Origin(scratch, *(f for pair in zip(("--tls-cert", "--tls-key", "--tls-ca"),
                                                   files, strict=True) for f in pair))
    certs = [f for pair in zip(("--node-cert", "--node-key", "--node-ca"), files,
                               strict=True) for f in pair]
    with stopping(origin):
        first, second = Edge(scratch, "first", origin, *certs), Edge(scratch, "second",
                                                                      origin, *certs)
        with stopping(first, second):
            data = os.urandom(8 * MiB)
            digest = first.push("secure/app", data)
            assert first.pull("secure/app", digest) == digest
            # The origin sends the second edge to the first, which holds every chunk.
            assert second.pull("secure/app", digest) == digest
            assert second.received("peer") > 0
        plain = Edge(scratch, "plain", origin)
        with stopping(plain), pytest.raises(urllib.error.HTTPError):
            plain.pull("secure/app", digest)


def test_a_blob_pushed_through_an_edge_lands_on_the_origin(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        a, b = Edge(scratch, "a", origin), Edge(scratch, "b", origin)
        with stopping(a, b):
            data = os.urandom(3 * MiB)
            digest = a.push("lib/tool", data)
            assert b.pull("lib/tool", digest) == digest
            # The other edge had nothing of it: every byte came from the origin or from a.
            assert b.received("owner") + b.received("peer") >= len(data)


def test_without_p2p_every_byte_comes_from_the_origin(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        edges = [Edge(scratch, f"edge{i}", origin, "--no-p2p") for i in range(2)]
        with stopping(*edges):
            data = os.urandom(12 * MiB)
            digest = edges[0].push("lib/app", data)
            before = origin.sent()
            assert pull_all(edges, "lib/app", digest) == [digest] * 2
            assert origin.sent() - before >= 2 * len(data)
            assert all(e.received("peer") == 0 for e in edges)


def test_a_peer_serving_wrong_bytes_is_put_aside_and_the_pull_succeeds(scratch: Path) -> None:
    origin = Origin(scratch)
    with stopping(origin):
        pusher = Edge(scratch, "pusher", origin)
        with stopping(pusher):
            data = os.urandom(16 * MiB)
            digest = pusher.push("lib/app", data)
        port_file = scratch / "evil.port"
        log = (scratch / "evil.log").open("wb")
        evil = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("evil_peer.py")), origin.target,
             digest, str(port_file)], stdout=log, stderr=log, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().endswith("\n"):
                assert evil.poll() is None, (scratch / "evil.log").read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            edge = Edge(scratch, "victim", origin)
            with stopping(edge):
                assert edge.pull("lib/app", digest) == digest
                assert edge.counter("shoal_edge_rejected_chunks_total") >= 1
                assert edge.received("owner") >= len(data) - 4 * MiB
        finally:
            os.kill(evil.pid, signal.SIGKILL)
            evil.wait(20)
            log.close()


def test_an_origin_at_its_cap_answers_busy_and_every_pull_completes(scratch: Path) -> None:
    origin = Origin(scratch, "--serve-limit", "1")
    with stopping(origin):
        edges = [Edge(scratch, f"edge{i}", origin, "--no-p2p") for i in range(3)]
        with stopping(*edges):
            data = os.urandom(12 * MiB)
            digest = edges[0].push("lib/app", data)
            assert pull_all(edges, "lib/app", digest) == [digest] * 3
            assert metric(origin.metrics_url, "shoal_peer_busy_total") > 0
