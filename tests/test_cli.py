"""The `shoal` command as a user meets it: help that reads well, a node's metrics, and
`shoal gc` against real `shoal serve` and `shoal node` processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from support import SHOAL, free_port, running, stop, wait_until


def test_help_names_every_command() -> None:
    out = subprocess.run([*SHOAL, "--help"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    for command in ("serve", "node", "gateway", "edge"):
        assert command in out
    serve = subprocess.run([*SHOAL, "serve", "--help"], capture_output=True, text=True,
                           timeout=60, check=True).stdout
    assert "--data" in serve and "--listen" in serve and "127.0.0.1:5000" in serve


def test_a_bad_listen_address_is_a_clear_usage_error() -> None:
    result = subprocess.run([*SHOAL, "serve", "--listen", "nowhere"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "HOST:PORT" in result.stderr


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    """A second node told a port that is taken refuses it (gRPC's default SO_REUSEPORT
    would have let it bind and split connections with the first), as does a registry."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        for command in ("node", "serve"):
            result = subprocess.run([*SHOAL, command, "--data", str(tmp_path / command),
                                     "--listen", address], capture_output=True, text=True,
                                    timeout=60)
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr
            assert address.split(":")[1] in result.stderr.strip().splitlines()[-1]


def test_a_node_serves_prometheus_metrics(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    metrics_port = free_port()
    proc = subprocess.Popen(
        [*SHOAL, "node", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
         "--port-file", str(port_file), "--metrics-listen", f"127.0.0.1:{metrics_port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), "node", proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            text = response.read().decode()
        assert "shoal_chunks 0.0" in text
        assert "shoal_dedup_saved_ratio" in text
    finally:
        assert stop(proc) == 0


def _push(base: str, repository: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    request = urllib.request.Request(f"{base}/v2/{repository}/blobs/uploads/?digest={digest}",
                                     data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    return digest


def _delete(base: str, repository: str, digest: str) -> None:
    request = urllib.request.Request(f"{base}/v2/{repository}/blobs/{digest}", method="DELETE")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 202


def _gc(*args: str) -> dict[str, Any]:
    result = subprocess.run([*SHOAL, "gc", "--json", *args], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_shoal_gc_reaches_a_running_registry_through_its_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([*SHOAL, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
                  "--gc-grace", "0", "--gc-interval", "0"], tmp_path / "serve.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"{base}/v2/", timeout=2), "registry", proc)
        kept = random.Random(1).randbytes(300_000)
        doomed = random.Random(2).randbytes(600_000)
        kept_digest = _push(base, "app", kept)
        doomed_digest = _push(base, "app", doomed)
        _delete(base, "app", doomed_digest)

        dry = _gc("--data", str(data), "--dry-run")
        assert dry["dry_run"] and dry["blobs"] == [doomed_digest]
        assert dry["chunk_bytes"] >= len(doomed) and dry["disk_bytes_reclaimed"] > 0
        real = _gc("--data", str(data))
        for field in ("blobs", "blobs_deleted", "chunks_deleted", "chunk_bytes",
                      "packs_compacted", "disk_bytes_reclaimed"):
            assert real[field] == dry[field], field
        assert _gc("--data", str(data))["blobs_deleted"] == 0
        with urllib.request.urlopen(f"{base}/v2/app/blobs/{kept_digest}", timeout=30) as got:
            assert got.read() == kept
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "shoal_gc_blobs_deleted_total 1.0" in metrics
        assert "shoal_gc_runs_total 2.0" in metrics
        table = subprocess.run([*SHOAL, "gc", "--data", str(data), "--dry-run"],
                               capture_output=True, text=True, timeout=120, check=True).stdout
        assert "dry run" in table and "blobs" in table


def test_shoal_gc_without_a_running_registry_says_so(tmp_path: Path) -> None:
    result = subprocess.run([*SHOAL, "gc", "--data", str(tmp_path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "no registry is running" in result.stderr


def test_shoal_gc_reaches_a_node_process(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    metrics_port = free_port()
    with running([*SHOAL, "node", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                  "--port-file", str(port_file), "--metrics-listen",
                  f"127.0.0.1:{metrics_port}", "--gc-grace", "0s", "--gc-interval", "0"],
                 tmp_path / "node.log") as proc:
        wait_until(lambda: port_file.exists() and port_file.read_text().endswith("\n"),
                   "node", proc)
        target = f"127.0.0.1:{port_file.read_text().strip()}"
        data = random.Random(3).randbytes(400_000)
        digest = asyncio.run(_push_and_unlink(target, data))
        dry = _gc("--node", target, "--dry-run")
        assert dry["blobs"] == [digest]
        real = _gc("--node", target)
        assert (real["blobs"], real["chunks_deleted"]) == (dry["blobs"], dry["chunks_deleted"])
        assert real["chunks_deleted"] > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                    timeout=10) as response:
            metrics = response.read().decode()
        assert f"shoal_gc_chunks_reclaimed_total {real['chunks_deleted']}.0" in metrics


async def _push_and_unlink(target: str, data: bytes) -> str:
    from node.blobio import write_blob
    from node.rpc.client import RemoteNode

    async def body() -> AsyncIterator[bytes]:
        yield data

    remote = RemoteNode(target)
    try:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        await write_blob(remote, "app", digest, body())
        assert await remote.unlink_blob("app", digest)
        return digest
    finally:
        await remote.close()


def test_a_bad_gc_duration_is_a_clear_usage_error() -> None:
    result = subprocess.run([*SHOAL, "serve", "--gc-grace", "soon"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "duration" in result.stderr


def test_shoal_serve_collects_on_its_schedule(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    def runs() -> int:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("shoal_gc_runs_total "):
                    return int(float(line.split()[1]))
        return 0

    with running([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen",
                  f"127.0.0.1:{port}", "--gc-interval", "0.2s"], tmp_path / "serve.log") as proc:
        wait_until(lambda: runs() >= 2, "two scheduled collections", proc)


def test_edge_options_are_checked_before_it_starts(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SHOAL, "edge", "--data", str(tmp_path / "d"), *args],
                              capture_output=True, text=True, timeout=60)

    missing = run("--peer-listen", "127.0.0.1:7500")
    assert missing.returncode == 2 and "--origin" in missing.stderr
    size = run("--peer-listen", "127.0.0.1:7500", "--origin", "127.0.0.1:7400",
               "--cache-size", "lots")
    assert size.returncode == 2 and "size in bytes" in size.stderr
    wildcard = run("--peer-listen", "0.0.0.0:7500", "--origin", "127.0.0.1:7400")
    assert wildcard.returncode != 0 and "--advertise" in wildcard.stderr
