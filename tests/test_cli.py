"""The `shoal` command as a user meets it: help that reads well, and a node's metrics."""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path

from support import SHOAL, free_port, stop, wait_until


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
