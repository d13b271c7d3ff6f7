"""Server memory against the number of concurrent slow pulls of one blob.

A pull must hold a piece or two per client, whatever the blob's size and however slowly
the client reads. This pushes one random blob, then for each reader count starts fresh
servers and runs that many concurrent GETs that each read at about `--rate` MB/s (a small
receive buffer, 64 KiB reads, sleeps in between: a 100 Mbit/s client, on loopback), and
samples every server process's VmRSS. Two layouts: `serve` (gateway and node in one
process) and `split` (`shoal node` behind `shoal gateway --node`, over gRPC).

    python -m benchmarks.slow_readers [--mib 256] [--readers 1 4 8 16] [--seconds 8]
                                      [--rate 10] [--layout serve split]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.common import Process, free_port, save

READ = 64 * 1024
RCVBUF = 64 * 1024
SAMPLE_EVERY = 0.1


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _shoal(*argv: str) -> list[str]:
    return [sys.executable, "-m", "shoal", "--log-level", "WARNING", *argv]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as reply:
            return int(reply.status) == 200
    except OSError:
        return False


@contextmanager
def servers(layout: str, data: Path, logs: Path) -> Iterator[tuple[int, dict[str, int]]]:
    """The registry's HTTP port and {process name: pid} while the block runs."""
    port = free_port()
    started: list[Process] = []
    try:
        if layout == "serve":
            started.append(Process("serve", _shoal("serve", "--data", str(data), "--listen",
                                                   f"127.0.0.1:{port}"), logs / "serve.log"))
        else:
            node_port = free_port()
            started.append(Process("node", _shoal("node", "--data", str(data), "--listen",
                                                  f"127.0.0.1:{node_port}"), logs / "node.log"))
            started.append(Process("gateway", _shoal("gateway", "--node",
                                                     f"127.0.0.1:{node_port}", "--listen",
                                                     f"127.0.0.1:{port}"),
                                   logs / "gateway.log"))
        started[-1].wait_until(lambda: _answers(f"http://127.0.0.1:{port}/v2/"), "answer /v2/")
        yield port, {p.name: p.pid for p in started}
    finally:
        for proc in reversed(started):
            proc.stop()


def push(port: int, mib: int) -> str:
    """A random blob of `mib` MiB, pushed monolithically; its digest."""
    body = os.urandom(mib << 20)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    base = f"http://127.0.0.1:{port}/v2/bench/slow/blobs/uploads/"
    with urllib.request.urlopen(urllib.request.Request(base, method="POST")) as reply:
        location = reply.headers["Location"]
    url = f"http://127.0.0.1:{port}{location}?digest={digest}"
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request) as reply:
        assert reply.status == 201, reply.status
    return digest


async def slow_get(port: int, digest: str, rate: float, seconds: float,
                   started: asyncio.Event) -> int:
    """GET the blob, reading `rate` bytes a second for `seconds`; the bytes read."""
    sock = socket.socket()
    # Set before connecting, so the window the kernel advertises stays small.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=READ)
    writer.write(f"GET /v2/bench/slow/blobs/{digest} HTTP/1.1\r\n"
                 f"Host: 127.0.0.1:{port}\r\n\r\n".encode())
    got = 0
    try:
        await started.wait()
        begin = time.monotonic()
        while (elapsed := time.monotonic() - begin) < seconds:
            piece = await reader.read(READ)
            if not piece:
                break
            got += len(piece)
            ahead = got / rate - elapsed
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    return got


async def run_readers(port: int, pids: dict[str, int], digest: str, readers: int,
                      rate: float, seconds: float) -> dict[str, object]:
    base = {name: rss_mib(pid) for name, pid in pids.items()}
    peak = dict(base)
    started = asyncio.Event()
    tasks = [asyncio.create_task(slow_get(port, digest, rate, seconds, started))
             for _ in range(readers)]
    started.set()
    while not all(t.done() for t in tasks):
        for name, pid in pids.items():
            peak[name] = max(peak[name], rss_mib(pid))
        await asyncio.sleep(SAMPLE_EVERY)
    got = sum(t.result() for t in tasks)
    return {"readers": readers,
            "mb_per_s_per_reader": got / readers / seconds / 1e6,
            "rss_before_mib": base, "rss_peak_mib": peak,
            "growth_per_reader_mib": {name: (peak[name] - base[name]) / readers
                                      for name in pids}}


def _peaks(row: dict[str, object]) -> dict[str, float]:
    peaks = row["rss_peak_mib"]
    assert isinstance(peaks, dict)
    return peaks


def _peak(row: dict[str, object], name: str) -> float:
    return _peaks(row)[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="blob size in MiB")
    parser.add_argument("--readers", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seconds", type=float, default=8.0, help="reading time per run")
    parser.add_argument("--rate", type=float, default=10.0, help="MB/s per reader")
    parser.add_argument("--layout", nargs="+", choices=["serve", "split"],
                        default=["serve", "split"])
    args = parser.parse_args()
    figures: dict[str, object] = {"mib": args.mib, "rate_mb_per_s": args.rate,
                                  "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="shoal-slow-") as tmp:
        data, logs = Path(tmp) / "data", Path(tmp)
        with servers("serve", data, logs) as (port, _):
            digest = push(port, args.mib)
        for layout in args.layout:
            rows = []
            for readers in args.readers:
                with servers(layout, data, logs) as (port, pids):
                    row = asyncio.run(run_readers(port, pids, digest, readers,
                                                  args.rate * 1e6, args.seconds))
                rows.append(row)
                growth = row["growth_per_reader_mib"]
                peak = _peaks(row)
                assert isinstance(growth, dict)
                print(f"  {layout:5s} {readers:3d} readers at "
                      f"{row['mb_per_s_per_reader']:5.1f} MB/s each: " + ",  ".join(
                          f"{name} peak {peak[name]:6.1f} MiB "
                          f"(+{growth[name]:5.1f} per reader)" for name in peak))
            if len(rows) > 1:
                # The first reader also pays one-off costs (imports, threads, arenas): the
                # slope is what each further reader costs.
                first, last = rows[0], rows[-1]
                span = args.readers[-1] - args.readers[0]
                slope = {name: (_peak(last, name) - _peak(first, name)) / span
                         for name in _peaks(last)}
                print(f"  {layout:5s} each further reader: " + ",  ".join(
                    f"{name} +{mib:.1f} MiB" for name, mib in slope.items()))
                figures[f"{layout}_mib_per_further_reader"] = slope
            figures[layout] = rows
    print(f"results: {save('slow_readers', figures)}")


if __name__ == "__main__":
    main()
