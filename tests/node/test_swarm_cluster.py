"""Edges in front of a real three-member cluster (`shoal edge --cluster`): metadata and
pushes go to the members by placement, a blob's holders are tracked on its owners, and
the members together send fewer bytes than one copy per edge."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cluster.clustertest import ClusterProcesses, running_cluster, top_level_support
from swarmtest import Edge, metric, pull_all, stopping

from node.cluster import placement
from node.rpc.tls import TlsFiles

MiB = 1 << 20




def members_sent(cluster: ClusterProcesses) -> float:
    """Chunk bytes every member's Peer service sent to edges."""
    return sum(metric(cluster.metrics_url(m), "shoal_peer_sent_bytes_total")
               for m in cluster.nodes)


def test_an_edge_in_front_of_a_cluster_pushes_and_pulls_correct_bytes(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2, metrics=True) as cluster:
        edge = Edge(scratch, "edge0", cluster.file)
        with stopping(edge):
            data = os.urandom(12 * MiB)
            digest = edge.push("lib/app", data)
            assert edge.pull("lib/app", digest) == digest
            # Every byte came from the members (no peer yet), through their Peer services.
            assert edge.received("owner") >= len(data)
            assert members_sent(cluster) >= len(data)
            # Pulled again: from the local cache.
            assert edge.pull("lib/app", digest) == digest
            assert edge.received("cache") >= len(data)


@pytest.mark.parametrize("edges", [2, 4])
def test_edges_in_front_of_a_cluster_feed_each_other(scratch: Path, edges: int) -> None:
    with running_cluster(scratch, n=3, replicas=2, metrics=True) as cluster:
        hosts = [Edge(scratch, f"edge{i}", cluster.file) for i in range(edges)]
        with stopping(*hosts):
            data = os.urandom(32 * MiB)
            digest = hosts[0].push("lib/app", data)
            before = members_sent(cluster)
            assert pull_all(hosts, "lib/app", digest) == [digest] * edges
            sent = members_sent(cluster) - before
            print(f"{edges} edges: the members sent {sent / len(data):.2f} copies")
            assert sent < edges * len(data), f"members sent {sent / len(data):.2f} copies"
            assert sum(e.received("peer") for e in hosts) > 0


def test_edges_speak_the_clusters_mutual_tls(scratch: Path) -> None:
    pki = top_level_support().make_pki(scratch)
    # One certificate (for 127.0.0.1) for members and edges, as server and as client.
    tls = TlsFiles(pki["server_cert"], pki["server_key"], pki["ca"])
    with running_cluster(scratch, n=3, replicas=2, tls=tls) as cluster:
        hosts = [Edge(scratch, f"edge{i}", cluster.file) for i in range(2)]
        with stopping(*hosts):
            data = os.urandom(16 * MiB)
            digest = hosts[0].push("secure/app", data)
            assert pull_all(hosts, "secure/app", digest) == [digest] * 2
            assert hosts[0].received("owner") + hosts[1].received("owner") > 0


def test_a_blobs_first_owner_down_the_next_one_serves_edges(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2) as cluster:
        pusher = Edge(scratch, "pusher", cluster.file)
        with stopping(pusher):
            data = os.urandom(8 * MiB)
            digest = pusher.push("lib/app", data)
        first = placement.rank(list(cluster.config.members), placement.BLOB, digest)[0]
        cluster.nodes[first.id].stop()
        # Edges that start now know the member is down: the blob's next owner keeps its
        # holders and relays the chunks it lacks from the live members holding them.
        hosts = [Edge(scratch, f"edge{i}", cluster.file) for i in range(2)]
        with stopping(*hosts):
            assert pull_all(hosts, "lib/app", digest) == [digest] * 2
