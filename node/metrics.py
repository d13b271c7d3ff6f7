"""Prometheus metrics of a storage node, read from the node when scraped: what it stores,
how much dedup saves, and the state of its index."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.local import LocalNode


class NodeCollector(Collector):
    def __init__(self, node: LocalNode) -> None:
        self._node = node

    def collect(self) -> Iterator[Metric]:
        node = self._node
        stats = node.stats()
        counters = {
            "shoal_chunks_written": ("Chunks newly written to packs", stats.chunks_written),
            "shoal_chunks_deduplicated": ("Chunks offered that were already stored",
                                          stats.chunks_duplicate),
            "shoal_logical_bytes": ("Bytes appended to uploads: what clients pushed",
                                    stats.logical_bytes),
            "shoal_stored_bytes": ("Chunk bytes written to packs after dedup and zstd",
                                   stats.stored_bytes),
            "shoal_uploads_expired": ("Upload sessions cancelled for idleness",
                                      stats.uploads_expired),
        }
        for name, (text, value) in counters.items():
            yield CounterMetricFamily(name, text, value=value)
        saved = 1 - stats.stored_bytes / stats.logical_bytes if stats.logical_bytes else 0.0
        gauges: dict[str, tuple[str, float]] = {
            "shoal_dedup_saved_ratio": ("Share of pushed bytes not written (dedup and zstd) "
                                        "since the node started", saved),
            "shoal_chunks": ("Chunks in the index", stats.chunks),
            "shoal_blobs": ("Blobs in the index", stats.blobs),
            "shoal_upload_sessions": ("Open upload sessions", stats.upload_sessions),
            "shoal_corrupt_chunks": ("Chunks that failed verification", stats.corrupt_chunks),
            "shoal_pack_bytes": ("Bytes in pack files", stats.pack_bytes),
            "shoal_index_bytes": ("Bytes of the LMDB index in use", stats.index_bytes),
        }
        for name, (text, level) in gauges.items():
            yield GaugeMetricFamily(name, text, value=level)
