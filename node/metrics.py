"""Prometheus metrics of a storage node, read from the node when scraped: what it stores,
how much dedup saves, the state of its index, what garbage collection reclaimed, and for
a cluster member what repair found short and sent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from node.gc.collector import GarbageCollector
from node.local import LocalNode

if TYPE_CHECKING:  # a node alone, or `shoal serve`, needs none of the cluster's modules
    from node.cluster.repair import RepairStats


class NodeCollector(Collector):
    def __init__(self, node: LocalNode, gc: GarbageCollector | None = None,
                 repair: Callable[[], RepairStats] | None = None) -> None:
        self._node = node
        self._gc = gc
        self._repair = repair

    def collect(self) -> Iterator[Metric]:
        node = self._node
        stats = node.stats()
        counters = {
            "shoal_chunks_written": ("Chunks newly written to packs", stats.chunks_written),
            "shoal_chunks_deduplicated": ("Chunks offered that were already stored",
                                          stats.chunks_duplicate),
            "shoal_chunk_hits": ("Chunks a writer found already stored (asked about, or "
                                 "offered again), so stored no second time",
                                 stats.chunks_found + stats.chunks_duplicate),
            "shoal_chunk_misses": ("Chunks a writer had to store", stats.chunks_written),
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
        ratio = stats.logical_bytes / stats.stored_bytes if stats.stored_bytes else 1.0
        gauges: dict[str, tuple[str, float]] = {
            "shoal_dedup_saved_ratio": ("Share of pushed bytes not written (dedup and zstd) "
                                        "since the node started", saved),
            "shoal_dedup_ratio": ("Bytes pushed per byte written (dedup and zstd) since the "
                                  "node started; 1 when nothing was written", ratio),
            "shoal_chunks": ("Chunks in the index", stats.chunks),
            "shoal_blobs": ("Blobs in the index", stats.blobs),
            "shoal_upload_sessions": ("Open upload sessions", stats.upload_sessions),
            "shoal_corrupt_chunks": ("Chunks that failed verification", stats.corrupt_chunks),
            "shoal_pack_bytes": ("Bytes in pack files", stats.pack_bytes),
            "shoal_index_bytes": ("Bytes of the LMDB index in use", stats.index_bytes),
            "shoal_index_map_bytes": ("Size of the LMDB map (doubles when full)",
                                      stats.index_map_bytes),
        }
        for name, (text, level) in gauges.items():
            yield GaugeMetricFamily(name, text, value=level)
        if self._gc is not None:
            yield from _gc_metrics(self._gc)
        if self._repair is not None:
            yield from _repair_metrics(self._repair())


def _repair_metrics(r: RepairStats) -> Iterator[Metric]:
    yield GaugeMetricFamily("shoal_under_replicated",
                            "Items this member found short of R copies at its last repair "
                            "pass", value=r.under_replicated)
    yield GaugeMetricFamily("shoal_repair_last_pass_timestamp_seconds",
                            "When the last repair pass ended (0: not yet)",
                            value=r.last_pass_ms / 1000)
    counters = {
        "shoal_repair_chunks": ("Chunks sent to owners that lacked them", r.repaired_chunks),
        "shoal_repair_bytes": ("Chunk bytes sent to owners that lacked them",
                               r.repaired_bytes),
        "shoal_scrub_chunks": ("Chunks re-hashed by scrub", r.scrubbed_chunks),
    }
    for name, (text, value) in counters.items():
        yield CounterMetricFamily(name, text, value=value)


def _gc_metrics(gc: GarbageCollector) -> Iterator[Metric]:
    t = gc.totals
    counters = {
        "shoal_gc_runs": ("Garbage collections run (dry runs not counted)", t.runs),
        "shoal_gc_failures": ("Garbage collections that failed", t.failures),
        "shoal_gc_blobs_deleted": ("Blobs deleted after their grace period", t.blobs_deleted),
        "shoal_gc_chunks_reclaimed": ("Chunks removed from the index", t.chunks_deleted),
        "shoal_gc_chunk_bytes_reclaimed": ("Stored bytes of the chunks removed",
                                           t.chunk_bytes),
        "shoal_gc_disk_bytes_reclaimed": ("Pack file bytes given back to the file system",
                                          t.disk_bytes_reclaimed),
        "shoal_gc_packs_compacted": ("Pack files rewritten or removed", t.packs_compacted),
    }
    for name, (text, value) in counters.items():
        yield CounterMetricFamily(name, text, value=value)
    yield GaugeMetricFamily("shoal_gc_last_run_seconds",
                            "Duration of the last garbage collection", value=t.last_seconds)
