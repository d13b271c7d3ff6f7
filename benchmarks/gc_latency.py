"""Request latency of a running `shoal serve` with and without garbage collection running.

Pushes kept blobs interleaved with doomed ones (so packs end up mostly dead and compaction
has live chunks to move), deletes the doomed ones until at least --chunks chunks are
unreferenced, then measures blob HEADs and GETs from a few concurrent clients: first with
nothing else going on, then for exactly as long as a collection runs (asked for through
the admin socket, as `shoal gc --data` does), deleting, sweeping and compacting with no
grace period. Afterwards every kept blob is read back
and checked. Prints p50/p99 of both phases and their ratio.

    python -m benchmarks.gc_latency [--chunks 10000] [--clients 4] [--baseline 10]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import folder_size, free_port, process, save
from node.rpc.admin import collect_garbage, socket_target

KEPT_SIZE = 256 << 10
DOOMED_SIZE = 1 << 20
REPOSITORY = "bench/gc"
DEADLINE = aiohttp.ClientTimeout(total=30)


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push(session: aiohttp.ClientSession, base: str, data: bytes) -> str:
    digest = digest_of(data)
    async with session.post(f"{base}/v2/{REPOSITORY}/blobs/uploads/",
                            params={"digest": digest}, data=data,
                            headers={"Content-Type": "application/octet-stream"}) as reply:
        if reply.status != 201:
            raise RuntimeError(f"push answered {reply.status}: {await reply.text()}")
    return digest


async def delete(session: aiohttp.ClientSession, base: str, digest: str) -> None:
    async with session.delete(f"{base}/v2/{REPOSITORY}/blobs/{digest}") as reply:
        if reply.status != 202:
            raise RuntimeError(f"delete answered {reply.status}")


class Load:
    """Clients issuing HEAD and GET of kept blobs back to back, timing each request."""

    def __init__(self, base: str, kept: dict[str, bytes], clients: int) -> None:
        self.base = base
        self.digests = sorted(kept)
        self.sizes = {d: len(b) for d, b in kept.items()}
        self.clients = clients
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = asyncio.Event()

    async def _client(self, session: aiohttp.ClientSession, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop.is_set():
            digest = rng.choice(self.digests)
            method = rng.choice(("HEAD", "GET"))
            url = f"{self.base}/v2/{REPOSITORY}/blobs/{digest}"
            started = time.perf_counter()
            try:
                async with session.request(method, url) as reply:
                    body = await reply.read()
                    ok = reply.status == 200 and (
                        method == "HEAD" or len(body) == self.sizes[digest])
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.failures.append(f"{method} {digest}: {exc!r}")
                continue
            self.latencies.append(time.perf_counter() - started)
            if not ok:
                self.failures.append(f"{method} {digest}: status {reply.status}")

    async def run_until(self, done: asyncio.Future[Any]) -> None:
        async with aiohttp.ClientSession(timeout=DEADLINE) as session:
            tasks = [asyncio.create_task(self._client(session, i)) for i in range(self.clients)]
            try:
                await done
            finally:
                self._stop.set()
                await asyncio.gather(*tasks)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": cuts[49] * 1000, "p99_ms": cuts[98] * 1000, "requests": len(ordered)}


async def measure(base: str, kept: dict[str, bytes], clients: int,
                  until: asyncio.Future[Any]) -> Load:
    load = Load(base, kept, clients)
    await load.run_until(until)
    return load


async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = work / "data"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "shoal", "--log-level", "WARNING", "serve", "--data",
           str(data), "--listen", f"127.0.0.1:{port}", "--gc-grace", "0",
           "--gc-interval", "0"]
    with process(cmd, work / "serve.log") as server:
        server.wait_until(lambda: _answers(f"{base}/v2/"), "answering HTTP")
        kept: dict[str, bytes] = {}
        doomed: list[str] = []
        per_doomed = DOOMED_SIZE // 20_500  # chunks per doomed blob, roughly
        started = time.perf_counter()
        async with aiohttp.ClientSession(timeout=DEADLINE) as session:
            seed = 0
            while len(doomed) * per_doomed < args.chunks * 1.05:
                seed += 1
                data_kept = blob(KEPT_SIZE, seed)
                kept[await push(session, base, data_kept)] = data_kept
                for _ in range(2):
                    seed += 1
                    doomed.append(await push(session, base, blob(DOOMED_SIZE, seed)))
            for digest in doomed:
                await delete(session, base, digest)
        print(f"pushed {len(kept)} kept and {len(doomed)} doomed blobs in "
              f"{time.perf_counter() - started:.1f} s; data folder "
              f"{folder_size(data) / 1e6:.0f} MB", flush=True)
        dry = _gc(data, dry_run=True)
        print(f"dry run: {dry['blobs_deleted']} blobs, {dry['chunks_deleted']} chunks, "
              f"{dry['packs_compacted']} packs would go", flush=True)

        loop = asyncio.get_running_loop()
        baseline_done: asyncio.Future[Any] = loop.create_future()
        loop.call_later(args.baseline, baseline_done.set_result, None)
        quiet = await measure(base, kept, args.clients, baseline_done)

        gc_started = time.perf_counter()
        collecting = asyncio.ensure_future(collect_garbage(socket_target(data), False))
        busy = await measure(base, kept, args.clients, collecting)
        gc_seconds = time.perf_counter() - gc_started
        report = dataclasses.asdict(collecting.result())

        intact = 0
        async with aiohttp.ClientSession(timeout=DEADLINE) as session:
            for digest, expected in kept.items():
                async with session.get(f"{base}/v2/{REPOSITORY}/blobs/{digest}") as reply:
                    if reply.status == 200 and await reply.read() == expected:
                        intact += 1
        size_after = folder_size(data)
    figures = {
        "unreferenced_chunks": dry["chunks_deleted"],
        "gc": {k: report[k] for k in ("blobs_deleted", "chunks_deleted", "chunk_bytes",
                                      "packs_compacted", "bytes_moved",
                                      "disk_bytes_reclaimed", "seconds")},
        "gc_seconds": gc_seconds,
        "dry_run_agrees": all(dry[k] == report[k] for k in
                              ("blobs_deleted", "chunks_deleted", "packs_compacted")),
        "without_gc": percentiles(quiet.latencies),
        "during_gc": percentiles(busy.latencies),
        "failed_requests": len(quiet.failures) + len(busy.failures),
        "kept_blobs_intact": f"{intact}/{len(kept)}",
        "data_folder_mb_after": size_after / 1e6,
        "clients": args.clients,
    }
    figures["p99_ratio"] = figures["during_gc"]["p99_ms"] / figures["without_gc"]["p99_ms"]
    for failure in (quiet.failures + busy.failures)[:10]:
        print("failed:", failure)
    return figures


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _gc(data: Path, dry_run: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "shoal", "gc", "--json", "--data", str(data)]
    result = subprocess.run(argv + (["--dry-run"] if dry_run else []), capture_output=True,
                            text=True, timeout=3600, check=True)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000,
                        help="unreferenced chunks to make (default: 10000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients")
    parser.add_argument("--baseline", type=float, default=10.0,
                        help="seconds of load measured without GC (default: 10)")
    parser.add_argument("--data-dir", type=Path, help="parent folder for the data")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="shoal-gc-bench-", dir=args.data_dir) as tmp:
        figures = asyncio.run(bench(args, Path(tmp)))
    print(json.dumps(figures, indent=2))
    q, b = figures["without_gc"], figures["during_gc"]
    print(f"without GC: p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms "
          f"({q['requests']} requests)")
    print(f"during GC:  p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms "
          f"({b['requests']} requests over {figures['gc_seconds']:.1f} s)")
    print(f"p99 ratio {figures['p99_ratio']:.2f} (target: within 2x); "
          f"failed requests: {figures['failed_requests']}; "
          f"kept blobs intact: {figures['kept_blobs_intact']}")
    print("saved", save("gc_latency", figures))


if __name__ == "__main__":
    main()
