"""/metrics exposes request, byte and node counters after a push and a pull."""

from __future__ import annotations

import os
import re
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from gwtest import Registry, registry_opener
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import make_app
from gateway.metrics import GatewayMetrics
from gateway.server import SERVER_SETTINGS
from node.local import LocalNode
from node.metrics import NodeCollector


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_after_a_push_and_a_pull(tmp_path: Path) -> None:
    node = await LocalNode.open(tmp_path / "node")
    metrics = GatewayMetrics()
    metrics.registry.register(NodeCollector(node))
    layer = os.urandom(3 << 20)
    try:
        async with TestClient(TestServer(make_app(node, metrics=metrics),
                                         **SERVER_SETTINGS)) as http:
            registry = Registry(http, node)
            digest = await registry.push_blob("lib/app", layer)
            await registry.push_blob("lib/other", layer)  # the same bytes again: deduplicated
            r = await http.get(f"/v2/lib/app/blobs/{digest}")
            assert await r.read() == layer
            r = await http.get("/v2/lib/app/blobs/sha256:" + "0" * 64)
            assert r.status == 404

            r = await http.get("/metrics")
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("text/plain")
            found = samples(await r.text())
    finally:
        await node.close()

    def value(name: str, **labels: str) -> float:
        return found[(name, tuple(sorted(labels.items())))]

    assert value("shoal_http_requests_total", route="blobs.get", method="GET",
                 status="200") == 1
    assert value("shoal_http_requests_total", route="blobs.get", method="GET",
                 status="404") == 1
    assert value("shoal_http_requests_total", route="uploads.start", method="POST",
                 status="201") == 2
    for status in ("200", "404"):
        assert value("shoal_http_request_duration_seconds_count", route="blobs.get",
                     method="GET", status=status) == 1
    assert value("shoal_http_received_bytes_total") == 2 * len(layer)
    assert value("shoal_http_sent_bytes_total") >= len(layer)
    # Twice the bytes pushed, once written (less if zstd found anything to save).
    assert value("shoal_logical_bytes_total") == 2 * len(layer)
    assert 0 < value("shoal_stored_bytes_total") <= len(layer)
    assert value("shoal_dedup_saved_ratio") >= 0.5
    assert value("shoal_dedup_ratio") >= 2
    # The second push asked for every chunk and found it: hits; the first stored them.
    assert value("shoal_chunk_hits_total") >= value("shoal_chunk_misses_total") > 0
    assert value("shoal_chunk_misses_total") == value("shoal_chunks_written_total")
    assert value("shoal_blobs") == 1
    assert value("shoal_chunks") == value("shoal_chunks_written_total") > 0
    assert value("shoal_upload_sessions") == 0
    assert value("shoal_corrupt_chunks") == 0
    assert value("shoal_pack_bytes") >= len(layer)
    assert value("shoal_index_bytes") > 0
    assert value("shoal_index_map_bytes") >= value("shoal_index_bytes")


async def test_metrics_route_is_not_counted_as_a_registry_route(tmp_path: Path) -> None:
    async with registry_opener(tmp_path / "node")() as registry:
        await registry.http.get("/v2/")
        text = await (await registry.http.get("/metrics")).text()
    assert re.search(r'shoal_http_requests_total\{method="GET",route="base.version_check",'
                     r'status="200"\} 1.0', text), text
