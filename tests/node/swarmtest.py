"""Helpers of the swarm tests: an origin node and edges as real processes on loopback,
blobs pushed and pulled over HTTP, and Prometheus counters read from /metrics.

The module has a name of its own (tests/node has no __init__.py; modules are imported by
basename)."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from support import free_port

START_TIMEOUT = 60.0
HTTP_TIMEOUT = 120.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as reply:
        return bool(reply.status == 200)


def metric(url: str, name: str, labels: str = "") -> float:
    """One sample of a /metrics page, 0 when absent."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        text = reply.read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == wanted:
            return float(value)
    return 0.0


class Proc:
    """A `python -m shoal ...` child, in a session of its own, ended by its PID."""

    def __init__(self, argv: list[str], log: Path) -> None:
        self.log_path = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "shoal", *argv],
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, url: str) -> None:
        try:
            self._wait_for(url)
        except BaseException:
            self.kill()  # its owner never got it back: nobody else would end it
            raise

    def _wait_for(self, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            # HTTPException: not the server yet (a port is briefly someone else's).
            with contextlib.suppress(OSError, http.client.HTTPException):
                if http_ok(url):
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"not ready: {url}\n{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(20)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Origin(Proc):
    def __init__(self, root: Path, *extra: str, like: Origin | None = None) -> None:
        """An origin node on free ports, or on those of `like` (a restart on its data)."""
        self.port = like.port if like is not None else free_port()
        self.metrics_port = like.metrics_port if like is not None else free_port()
        super().__init__(["node", "--data", str(root / "origin"), "--listen", self.target,
                          "--metrics-listen", f"127.0.0.1:{self.metrics_port}", *extra],
                         root / "origin.log")
        self.wait_for(self.metrics_url)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def sent(self) -> float:
        return metric(self.metrics_url, "shoal_peer_sent_bytes_total")


class Edge(Proc):
    def __init__(self, root: Path, name: str, origin: Origin | Path, *extra: str,
                 like: Edge | None = None) -> None:
        """An edge on free ports, or on those of `like` (a restart), of an origin or of
        the cluster a cluster file (a Path) describes."""
        self.name = name
        self.http = like.http if like is not None else f"127.0.0.1:{free_port()}"
        self.peer = like.peer if like is not None else f"127.0.0.1:{free_port()}"
        upstream = (["--cluster", str(origin)] if isinstance(origin, Path)
                    else ["--origin", origin.target])
        super().__init__(["edge", "--data", str(root / name), "--listen", self.http,
                          "--peer-listen", self.peer, *upstream, *extra],
                         root / f"{name}.log")
        self.wait_for(f"http://{self.http}/v2/")

    def blob_url(self, repository: str, digest: str) -> str:
        return f"http://{self.http}/v2/{repository}/blobs/{digest}"

    def pull(self, repository: str, digest: str) -> str:
        """The digest of what a GET of the blob returns, hashed as it streams."""
        hasher = hashlib.sha256()
        with urllib.request.urlopen(self.blob_url(repository, digest),
                                    timeout=HTTP_TIMEOUT) as reply:
            while piece := reply.read(1 << 20):
                hasher.update(piece)
        return "sha256:" + hasher.hexdigest()

    def push(self, repository: str, data: bytes) -> str:
        """A monolithic upload through the edge (it goes to the origin)."""
        digest = sha256(data)
        request = urllib.request.Request(
            f"http://{self.http}/v2/{repository}/blobs/uploads/?digest={digest}",
            data=data, method="POST",
            headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as reply:
            assert reply.status == 201, reply.status
        return digest

    def counter(self, name: str, labels: str = "") -> float:
        return metric(f"http://{self.http}/metrics", name, labels)

    def received(self, source: str) -> float:
        return self.counter("shoal_edge_received_bytes_total", f'source="{source}"')


@contextlib.contextmanager
def stopping(*procs: Proc) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.stop()


def pull_all(edges: list[Edge], repository: str, digest: str) -> list[str | BaseException]:
    """Every edge pulls at once; each one's digest, or the error it met (the caller decides
    which failures are expected)."""
    def pull(edge: Edge) -> str | BaseException:
        try:
            return edge.pull(repository, digest)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(len(edges)) as pool:
        return list(pool.map(pull, edges))
