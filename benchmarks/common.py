"""Shared pieces of the benchmark harnesses: free ports, processes, sizes, results."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
START_TIMEOUT = 60.0


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


class Process:
    """A child in its own session, logging to a file, stopped by its PID."""

    def __init__(self, name: str, argv: Sequence[str], log: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log = log
        with log.open("ab") as out:
            self.popen = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})}, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_until(self, ready: Callable[[], bool], what: str,
                   timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if not self.alive() or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace").splitlines()[-30:]
                self.stop()
                raise RuntimeError(f"{self.name} never got to {what}:\n" + "\n".join(tail))
            time.sleep(0.05)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, SIGKILL after `grace`, then whatever is left of its process group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


@contextmanager
def process(cmd: list[str], log: Path, ready_file: Path | None = None,
            timeout: float = 30.0) -> Iterator[Process]:
    """Run `cmd` for the duration of the block (ready once `ready_file` holds something),
    ending it by PID."""
    proc = Process(Path(cmd[0]).name, cmd, log)
    try:
        if ready_file is not None:
            proc.wait_until(lambda: ready_file.exists() and bool(ready_file.read_text().strip()),
                            f"{ready_file} is written", timeout)
        yield proc
    finally:
        proc.stop()


def node_command(data: Path, port_file: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "shoal", "--log-level", "WARNING", "node", "--data",
            str(data), "--listen", "127.0.0.1:0", "--port-file", str(port_file), *options]


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


def pyplot() -> Any | None:
    """matplotlib.pyplot drawing to files, or None (said once) where it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is missing (pip install -e '.[bench]'): no chart")
        return None
    return plt
