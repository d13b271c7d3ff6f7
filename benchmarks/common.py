"""Shared pieces of the benchmark harnesses: free ports, processes, sizes, results."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def folder_size(path: Path) -> int:
    """Bytes actually allocated on disk under `path` (sparse files count what they use)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.stat(os.path.join(root, name)).st_blocks * 512
    return total


@contextmanager
def process(cmd: list[str], log: Path, ready_file: Path | None = None,
            timeout: float = 30.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run `cmd` for the duration of the block, ending it by PID (SIGTERM, then SIGKILL)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        if ready_file is not None:
            deadline = time.monotonic() + timeout
            while not ready_file.exists() or not ready_file.read_text().strip():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{cmd[0]} did not start: see {log}")
                time.sleep(0.05)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def node_command(data: Path, port_file: Path) -> list[str]:
    return [sys.executable, "-m", "shoal", "--log-level", "WARNING", "node", "--data",
            str(data), "--listen", "127.0.0.1:0", "--port-file", str(port_file)]


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")



def save(name: str, figures: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    return path


def mb_per_s(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6
