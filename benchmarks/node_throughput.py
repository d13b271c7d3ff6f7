"""Node ingest and read throughput over gRPC, and node memory while streaming big blobs.

Starts a real node process, then from this process (the client):
  * ingest: streams pre-encoded chunks through one ChunkStore.Put stream (~1 MiB messages);
    the node verifies every chunk's hash, writes packs, fsyncs, commits the index;
  * read: Blobs.Read of the same bytes committed as a blob (the node reads packs, verifies
    every chunk, streams ~1 MiB messages), once from disk, then three times from the page
    cache (the median is printed);
for incompressible (random) and compressible (text-like) data. The disk's own fdatasync'd
sequential write rate, its sequential read of a file not in the page cache, and a bare gRPC
stream between two processes are measured in the same run: they are the ceilings for
durable ingest, for a first read, and for anything crossing gRPC.
With --big N, a blob of N MiB is streamed in and out while the node's peak RSS is watched.

    python -m benchmarks.node_throughput [--mib 512] [--data-dir DIR] [--big 4096]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from benchmarks.common import mb_per_s, node_command, peak_rss_mib, process, save
from benchmarks.grpc_ceiling import ceiling
from node.api import StoredChunk
from node.chunking import StreamChunker
from node.codec import CompressionProbe
from node.grouping import by_size
from node.recipe import Recipe
from node.rpc.client import RemoteNode
from shoal.memory import pin_allocator

MESSAGE = 1 << 20
WORDS = (b"layer manifest digest chunk registry config image index blob tag push pull node "
         b"gateway swarm peer origin replica recipe pack offset length codec").split()


def random_data(size: int) -> Iterator[bytes]:
    for _ in range(0, size, 1 << 20):
        yield os.urandom(1 << 20)


def text_data(size: int, seed: int = 1) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(0, size, 1 << 20):
        line = b" ".join(rng.choice(WORDS) for _ in range(12)) + b"\n"
        piece = bytearray()
        while len(piece) < (1 << 20):
            piece += line + str(rng.random()).encode() + b"\n"
        yield bytes(piece[: 1 << 20])


def encode(pieces: Iterator[bytes]) -> list[StoredChunk]:
    chunker = StreamChunker()
    probe = CompressionProbe()
    out: list[StoredChunk] = []
    for piece in pieces:
        out.extend(probe.encode(bytes(c)) for c in chunker.feed(piece))
    out.extend(probe.encode(bytes(c)) for c in chunker.finish())
    return out


async def batches(chunks: list[StoredChunk]) -> AsyncIterator[list[StoredChunk]]:
    for batch in by_size(chunks, MESSAGE):
        yield batch


def disk_write_rate(folder: Path, size: int = 256 << 20) -> float:
    """Sequential writes through the page cache, then fdatasync: what durable ingest could
    reach with no other work. On a VM whose memory is backed on first use, pages never
    used before weigh in as much as the disk (README, Benchmarks), so this swings between
    runs as the kernel's free memory was or was not used a moment before."""
    buf = os.urandom(16 << 20)
    path = folder / "disk-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    start = time.perf_counter()
    try:
        for _ in range(size // len(buf)):
            os.write(fd, buf)
        os.fdatasync(fd)
    finally:
        os.close(fd)
        path.unlink()
    return mb_per_s(size, time.perf_counter() - start)


def disk_cold_read_rate(folder: Path, size: int = 256 << 20) -> float:
    """A file not in the page cache read in 1 MiB preads through it, as the node reads a
    pack the first time: the ceiling for a first read, which on a VM whose memory is
    backed on first use also pays for the fresh pages the cache takes."""
    path = folder / "disk-read-probe"
    block = os.urandom(1 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for _ in range(size // len(block)):
            os.write(fd, block)
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # written back: now droppable
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDONLY)
    start = time.perf_counter()
    try:
        offset = 0
        while piece := os.pread(fd, 1 << 20, offset):
            offset += len(piece)
    finally:
        os.close(fd)
        path.unlink()
    return mb_per_s(offset, time.perf_counter() - start)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(node: RemoteNode, pid: int, name: str, pieces: Iterator[bytes]
                  ) -> dict[str, float]:
    chunks = encode(pieces)
    raw = sum(c.raw_length for c in chunks)
    stored = sum(len(c.data) for c in chunks)
    node_cpu, own_cpu = cpu_seconds(pid), time.process_time()
    start = time.perf_counter()
    result = await node.put_chunks(batches(chunks))
    ingest = time.perf_counter() - start
    node_cpu, own_cpu = cpu_seconds(pid) - node_cpu, time.process_time() - own_cpu
    recipe = Recipe.from_entries((c.id, c.raw_length) for c in chunks)
    digest = "sha256:" + hashlib.sha256(name.encode() + os.urandom(8)).hexdigest()
    await node.commit_blob(digest, recipe)
    # The first read finds the packs on disk (node/packwriter.py writes around the page
    # cache), or in the page cache with --buffered-packs; the next three, in the cache.
    reads = []
    for _ in range(4):
        start = time.perf_counter()
        got = 0
        async for piece in node.read_blob(digest):
            got += len(piece)
        reads.append(time.perf_counter() - start)
        assert got == raw, (got, raw)
    figures = {
        "raw_mb": raw / 1e6, "stored_mb": stored / 1e6, "chunks": len(chunks),
        "new_chunks": result.stored,
        "ingest_mb_per_s": mb_per_s(raw, ingest),
        "first_read_mb_per_s": mb_per_s(raw, reads[0]),
        "read_mb_per_s": mb_per_s(raw, sorted(reads[1:])[1]),
        # CPU per MB is steadier than MB/s on a shared machine, and says who pays.
        "ingest_node_cpu_ms_per_mb": 1e3 * node_cpu / (raw / 1e6),
        "ingest_client_cpu_ms_per_mb": 1e3 * own_cpu / (raw / 1e6),
    }
    print(f"  {name:15s} ingest {figures['ingest_mb_per_s']:6.0f} MB/s   "
          f"read {figures['read_mb_per_s']:6.0f} MB/s cached, "
          f"{figures['first_read_mb_per_s']:.0f} first   "
          f"({raw / 1e6:.0f} MB in {len(chunks)} chunks, {stored / 1e6:.0f} MB stored)")
    print(f"  {'':15s} ingest CPU per MB: node {figures['ingest_node_cpu_ms_per_mb']:.2f} ms, "
          f"client {figures['ingest_client_cpu_ms_per_mb']:.2f} ms")
    return figures


async def big_blob(node: RemoteNode, pid: int, mib: int) -> dict[str, float]:
    """Stream `mib` MiB in and out without holding it anywhere; watch the node's RSS."""
    from node.blobio import write_blob

    before = peak_rss_mib(pid)
    digester = hashlib.sha256()
    seed = os.urandom(1 << 20)

    def piece(i: int) -> bytes:
        return hashlib.sha256(i.to_bytes(8, "big")).digest() + seed[32:]

    for i in range(mib):
        digester.update(piece(i))
    digest = "sha256:" + digester.hexdigest()

    async def body() -> AsyncIterator[bytes]:
        for i in range(mib):
            yield piece(i)

    start = time.perf_counter()
    await write_blob(node, "bench/big", digest, body())
    write_s = time.perf_counter() - start
    after_write = peak_rss_mib(pid)
    start = time.perf_counter()
    check = hashlib.sha256()
    async for data in node.read_blob(digest):
        check.update(data)
    read_s = time.perf_counter() - start
    assert "sha256:" + check.hexdigest() == digest
    figures = {"mib": mib, "node_peak_rss_before_mib": before,
               "node_peak_rss_after_write_mib": after_write,
               "node_peak_rss_after_read_mib": peak_rss_mib(pid),
               "write_mb_per_s": mb_per_s(mib << 20, write_s),
               "read_mb_per_s": mb_per_s(mib << 20, read_s)}
    print(f"  {mib} MiB blob: node peak RSS {before:.0f} MiB before, "
          f"{figures['node_peak_rss_after_write_mib']:.0f} after write, "
          f"{figures['node_peak_rss_after_read_mib']:.0f} after read")
    return figures


async def run(args: argparse.Namespace, data: Path, port_file: Path) -> dict[str, object]:
    size = args.mib << 20
    figures: dict[str, object] = {"mib": args.mib, "data_dir": str(data.parent)}
    figures["disk_fdatasync_write_mb_per_s"] = disk_write_rate(data.parent)
    print(f"  disk: {figures['disk_fdatasync_write_mb_per_s']:.0f} MB/s sequential write "
          f"through the page cache, then fdatasync")
    figures["grpc_ceiling_mb_per_s"] = await asyncio.to_thread(ceiling)
    print(f"  gRPC: {figures['grpc_ceiling_mb_per_s']:.0f} MB/s for a bare stream of 1 MiB "
          f"messages between two processes (the transport's ceiling)")
    options = ["--buffered-packs"] if args.buffered_packs else []
    figures["buffered_packs"] = args.buffered_packs
    with process(node_command(data, port_file, *options), data.parent / "node.log",
                 port_file) as proc:
        port = await asyncio.to_thread(port_file.read_text)
        node = RemoteNode(f"127.0.0.1:{port.strip()}")
        try:
            figures["incompressible"] = await measure(node, proc.pid, "incompressible",
                                                      random_data(size))
            figures["compressible"] = await measure(node, proc.pid, "compressible",
                                                    text_data(size))
            if args.big:
                figures["big_blob"] = await big_blob(node, proc.pid, args.big)
            figures["node_peak_rss_mib"] = peak_rss_mib(proc.pid)
        finally:
            await node.close()
    # After the node, so the pages this probe frees do not serve the node's first reads.
    figures["disk_cold_read_mb_per_s"] = disk_cold_read_rate(data.parent)
    print(f"  disk: {figures['disk_cold_read_mb_per_s']:.0f} MB/s sequential read, 1 MiB "
          f"preads, of a file not in the page cache (the ceiling for a first read)")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mib", type=int, default=512, help="MiB per data kind")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="where the node keeps its data (default: a temp dir; "
                             "use /dev/shm to take the disk out of the measure)")
    parser.add_argument("--big", type=int, default=0, help="also stream a blob of N MiB")
    parser.add_argument("--buffered-packs", action="store_true",
                        help="run the node with --buffered-packs (node/packwriter.py)")
    args = parser.parse_args()
    pin_allocator()  # as in every shoal process, the gateway (this client's role) included
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        figures = asyncio.run(run(args, Path(tmp) / "data", Path(tmp) / "port"))
    name = "node_throughput" + ("_tmpfs" if args.data_dir == Path("/dev/shm") else "")
    print(f"results: {save(name, figures)}")


if __name__ == "__main__":
    main()
