"""/metrics of real processes: a `shoal serve` after `shoal push` and `shoal pull`, and
the `--metrics-listen` endpoint of `shoal node` cluster members while one repairs the
other. Every metric the README lists is found with a plausible value."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import urllib.request
from pathlib import Path

from clients.images import ImageMaker, write_layout
from prometheus_client.parser import text_string_to_metric_families
from support import SHOAL, free_port, running, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def total(found: Samples, name: str, **labels: str) -> float:
    """The sum over every sample of `name` whose labels include `labels`."""
    return sum(v for (n, have), v in found.items()
               if n == name and set(labels.items()) <= set(have))


def shoal(*args: str) -> dict[str, object]:
    result = subprocess.run([*SHOAL, *args, "--json", "--quiet"], capture_output=True,
                            text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def test_registry_metrics_after_a_push_and_a_pull(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    image = ImageMaker(801).image()
    layout = tmp_path / "layout"
    write_layout(layout, {"v1": image})
    pushed = sum(len(b.data) for b in image.blobs())
    with running([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen", address,
                  "--gc-grace", "0", "--gc-interval", "0"], tmp_path / "serve.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"http://{address}/v2/", timeout=2),
                   "registry", proc)
        shoal("push", str(layout), f"{address}/app:v1")
        # The same blobs into another repository: uploaded again, stored no second time.
        shoal("push", str(layout), f"{address}/copy:v1")
        shoal("pull", f"{address}/app:v1", str(tmp_path / "out"))
        doomed = random.Random(5).randbytes(200_000)
        digest = "sha256:" + hashlib.sha256(doomed).hexdigest()
        urllib.request.urlopen(urllib.request.Request(
            f"http://{address}/v2/junk/blobs/uploads/?digest={digest}", data=doomed,
            method="POST"), timeout=30).close()
        urllib.request.urlopen(urllib.request.Request(
            f"http://{address}/v2/junk/blobs/{digest}", method="DELETE"), timeout=30).close()
        subprocess.run([*SHOAL, "gc", "--data", str(tmp_path / "data")], check=True,
                       capture_output=True, timeout=120)
        found = scrape(f"http://{address}/metrics")

    # Requests and latencies by route and status.
    assert value(found, "shoal_http_requests_total", route="manifests.put", method="PUT",
                 status="201") == 2
    assert value(found, "shoal_http_request_duration_seconds_count", route="manifests.put",
                 method="PUT", status="201") == 2
    assert total(found, "shoal_http_requests_total", route="blobs.get", status="200") >= 4
    assert total(found, "shoal_http_request_duration_seconds_sum", route="blobs.get") > 0
    # Bytes in (both pushes and the junk blob) and out (the pull).
    assert value(found, "shoal_http_received_bytes_total") >= 2 * pushed + len(doomed)
    assert value(found, "shoal_http_sent_bytes_total") >= pushed
    # Chunks: the first push stored them (misses), the second found them (hits).
    misses = value(found, "shoal_chunk_misses_total")
    assert misses == value(found, "shoal_chunks_written_total") > 0
    assert value(found, "shoal_chunk_hits_total") >= misses - 10
    assert value(found, "shoal_logical_bytes_total") >= 2 * pushed
    assert value(found, "shoal_dedup_ratio") > 1.5
    assert 0.3 < value(found, "shoal_dedup_saved_ratio") < 1
    # Garbage collection gave the junk blob's bytes back.
    assert value(found, "shoal_gc_runs_total") == 1
    assert value(found, "shoal_gc_chunk_bytes_reclaimed_total") >= len(doomed)
    assert value(found, "shoal_gc_blobs_deleted_total") == 1
    # The index.
    assert 0 < value(found, "shoal_index_bytes") <= value(found, "shoal_index_map_bytes")
    assert value(found, "shoal_blobs") == len(image.blobs())


def test_member_metrics_show_repair(tmp_path: Path) -> None:
    """Two members keeping two copies, one written while the other is down: when it comes
    back, the first one's metrics show what it found short and the bytes it sent."""
    ports = [free_port() for _ in range(5)]
    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text(
        "replicas = 2\nwrite_quorum = 1\n\n"
        f'[[members]]\nid = "node1"\naddress = "127.0.0.1:{ports[0]}"\n\n'
        f'[[members]]\nid = "node2"\naddress = "127.0.0.1:{ports[1]}"\n')
    image = ImageMaker(802).image(layer_count=2)
    layout = tmp_path / "layout"
    write_layout(layout, {"v1": image})
    pushed = sum(len(b.data) for b in image.blobs())
    gateway = f"127.0.0.1:{ports[4]}"

    def member(i: int) -> list[str]:
        return [*SHOAL, "node", "--cluster", str(cluster_file), "--id", f"node{i}",
                "--data", str(tmp_path / f"node{i}"), "--repair-interval", "0.2",
                "--metrics-listen", f"127.0.0.1:{ports[i + 1]}"]

    metrics = f"http://127.0.0.1:{ports[2]}/metrics"
    with running(member(1), tmp_path / "node1.log") as first, \
            running([*SHOAL, "gateway", "--cluster", str(cluster_file), "--listen", gateway],
                    tmp_path / "gateway.log") as front:
        wait_until(lambda: scrape(metrics), "node1's metrics", first)
        wait_until(lambda: urllib.request.urlopen(f"http://{gateway}/v2/", timeout=2),
                   "gateway", front)
        shoal("push", str(layout), f"{gateway}/app:v1")
        found = scrape(metrics)
        assert value(found, "shoal_grpc_requests_total", method="ChunkStore/Put",
                     code="OK") >= 1
        assert total(found, "shoal_grpc_request_duration_seconds_count",
                     method="ChunkStore/Has") >= 1
        assert value(found, "shoal_repair_bytes_total") == 0
        with running(member(2), tmp_path / "node2.log") as second:
            wait_until(lambda: value(scrape(metrics), "shoal_repair_bytes_total")
                       >= pushed // 2, "node1 repairs node2's copies", second, timeout=60)
            wait_until(lambda: value(scrape(metrics), "shoal_under_replicated") == 0,
                       "nothing under-replicated", second, timeout=60)
            found = scrape(metrics)
            second_found = scrape(f"http://127.0.0.1:{ports[3]}/metrics")
    assert value(found, "shoal_repair_chunks_total") > 0
    assert value(found, "shoal_repair_last_pass_timestamp_seconds") > 1.7e9
    assert value(found, "shoal_scrub_chunks_total") >= 0
    assert value(found, "shoal_chunks") > 0
    assert value(second_found, "shoal_chunk_misses_total") > 0  # what repair sent it
    assert total(second_found, "shoal_grpc_requests_total", method="ChunkStore/Put") >= 1
