"""Prometheus metrics of the swarm: bytes served to peers and edges (owners and edges),
bytes an edge received by source, and its cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.swarm.service import PeerService

if TYPE_CHECKING:
    from node.swarm.edge_swarm import EdgeSwarm
    from node.swarm.holders import HolderBook


def peer_metrics(peer: PeerService) -> Iterator[Metric]:
    c = peer.counters
    yield CounterMetricFamily("shoal_peer_sent_bytes",
                              "Chunk bytes (as stored) sent to edges and peers by Peer.Fetch",
                              value=c.sent_bytes)
    yield CounterMetricFamily("shoal_peer_sent_chunks", "Chunks sent by Peer.Fetch",
                              value=c.sent_chunks)
    yield CounterMetricFamily("shoal_peer_busy", "Fetch requests answered busy (over the cap)",
                              value=c.busy)
    yield CounterMetricFamily("shoal_peer_redirects",
                              "Fetch requests sent to an edge that holds or is getting the "
                              "chunks", value=c.redirects)
    yield GaugeMetricFamily("shoal_peer_streams", "Fetch streams being served",
                            value=c.serving)


class OwnerSwarmCollector(Collector):
    def __init__(self, peer: Callable[[], PeerService | None], book: HolderBook) -> None:
        self._peer = peer
        self._book = book

    def collect(self) -> Iterator[Metric]:
        peer = self._peer()
        if peer is not None:
            yield from peer_metrics(peer)
        yield GaugeMetricFamily("shoal_swarm_holders", "Edges listed as holders",
                                value=len(self._book))


class EdgeCollector(Collector):
    def __init__(self, swarm: EdgeSwarm) -> None:
        self._swarm = swarm

    def collect(self) -> Iterator[Metric]:
        swarm = self._swarm
        received = CounterMetricFamily(
            "shoal_edge_received_bytes",
            "Chunk bytes (as stored) that pulls through this edge got, by source: "
            "cache (already here), peer (another edge), owner (the origin)",
            labels=["source"])
        for source, value in swarm.counters.received.items():
            received.add_metric([source], value)
        yield received
        yield CounterMetricFamily("shoal_edge_rejected_chunks",
                                  "Chunks that failed their SHA-256 check (bad peers)",
                                  value=swarm.counters.rejected_chunks)
        yield CounterMetricFamily("shoal_edge_source_failures",
                                  "Fetches from a peer or owner that failed midway",
                                  value=swarm.counters.source_failures)
        yield CounterMetricFamily("shoal_edge_evicted_bytes", "Cache bytes evicted",
                                  value=swarm.cache.evicted_bytes)
        yield GaugeMetricFamily("shoal_edge_cache_bytes", "Bytes in the chunk cache",
                                value=swarm.cache.size)
        yield GaugeMetricFamily("shoal_edge_cache_limit_bytes", "The cache's size limit",
                                value=swarm.cache.limit)
        if swarm.peer is not None:
            yield from peer_metrics(swarm.peer)
