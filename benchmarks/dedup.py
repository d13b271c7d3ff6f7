"""Dedup on successive releases of real software, stored as uncompressed OCI layers.

Fetches wheels of consecutive releases of a few PyPI packages (pip download), unpacks
each into a tar (uncompressed, as an OCI layer of that release would be), pushes every
tar as a blob into a fresh node, and compares the data folder's size on disk, index
included, with the sum of the unique blob sizes (what whole-blob dedup would store).

Ingest is measured twice. Embedded: the whole push in one process (`shoal serve`'s path:
chunking, naming, compressing and storing). Node: the node alone, in its own process, over
gRPC as a gateway speaks to it, the layers' chunks cut, named and compressed beforehand
(the gateway's work): which the node lacks, those put in one stream per layer, the blob
committed. The storage node's ingest target is about the second.

    python -m benchmarks.dedup [--avg 16384 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

from benchmarks.common import folder_size, mb_per_s, node_command, process, save
from benchmarks.node_throughput import cpu_seconds, encode
from node.api import StoredChunk
from node.blobio import write_blob
from node.grouping import by_size
from node.local import LocalNode
from node.recipe import Recipe
from node.rpc.client import RemoteNode
from shoal.memory import pin_allocator

RELEASES = {
    "django": ["5.0.6", "5.0.7", "5.0.8", "5.0.9", "5.0.10"],
    "botocore": ["1.34.100", "1.34.101", "1.34.102", "1.34.103"],
    "setuptools": ["69.5.0", "69.5.1", "70.0.0", "70.1.0"],
    "pip": ["24.0", "24.1", "24.1.1", "24.1.2"],
}
CACHE = Path(tempfile.gettempdir()) / "shoal-bench-wheels"


def fetch(package: str, version: str) -> Path:
    CACHE.mkdir(exist_ok=True)
    found = list(CACHE.glob(f"{package.replace('-', '_')}-{version}-*.whl"))
    found += list(CACHE.glob(f"{package.capitalize()}-{version}-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                        "--only-binary=:all:", "-d", str(CACHE), f"{package}=={version}"],
                       check=True)
        found = [p for p in CACHE.glob("*.whl")
                 if p.name.lower().startswith(f"{package.replace('-', '_').lower()}-{version}-")]
    return found[0]


def layer_of(wheel: Path) -> bytes:
    """The wheel's files as an uncompressed tar, in a stable order, as a layer would be."""
    out = io.BytesIO()
    with zipfile.ZipFile(wheel) as zf, tarfile.open(fileobj=out, mode="w") as tar:
        for info in sorted(zf.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            data = zf.read(info)
            member = tarfile.TarInfo(f"usr/lib/python3/site-packages/{info.filename}")
            member.size = len(data)
            member.mtime = 0
            tar.addfile(member, io.BytesIO(data))
    return out.getvalue()


async def ingest(data_dir: Path, layers: list[bytes]) -> tuple[float, float]:
    """Push every layer into a node in this process; wall and CPU seconds."""
    node = await LocalNode.open(data_dir)
    # A pusher knows its layers' digests before it pushes: computing them is not ingest.
    digests = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    start, cpu = time.perf_counter(), time.process_time()
    try:
        for layer, digest in zip(layers, digests, strict=True):

            async def body(layer: bytes = layer) -> AsyncIterator[bytes]:
                for i in range(0, len(layer), 1 << 20):
                    yield layer[i:i + (1 << 20)]

            await write_blob(node, "bench/dedup", digest, body())
    finally:
        await node.close()
    return time.perf_counter() - start, time.process_time() - cpu


HAS_STEP = 4 << 20      # raw bytes of chunks asked about at once, as node/blobio.py does
MESSAGE = 1 << 20       # chunk bytes per put message


def prepare(layer: bytes) -> list[StoredChunk]:
    """A layer's chunks as a gateway sends them: cut, named, compressed when worth it."""
    return encode(layer[i:i + (1 << 20)] for i in range(0, len(layer), 1 << 20))


async def node_ingest(data_dir: Path, layers: list[bytes]) -> tuple[float, float]:
    """Store every layer through a node process over gRPC; wall seconds, and the node's
    CPU seconds."""
    prepared = [("sha256:" + hashlib.sha256(layer).hexdigest(), prepare(layer))
                for layer in layers]
    port_file = data_dir.parent / "node.port"
    with process(node_command(data_dir, port_file), data_dir.parent / "node.log",
                 port_file) as proc:
        node = RemoteNode(f"127.0.0.1:{port_file.read_text().strip()}")
        try:
            start, cpu = time.perf_counter(), cpu_seconds(proc.pid)
            for digest, chunks in prepared:
                await node.put_chunks(_missing(node, chunks))
                recipe = Recipe.from_entries((c.id, c.raw_length) for c in chunks)
                await node.commit_blob(digest, recipe)
            return time.perf_counter() - start, cpu_seconds(proc.pid) - cpu
        finally:
            await node.close()


async def _missing(node: RemoteNode, chunks: list[StoredChunk]
                   ) -> AsyncIterator[list[StoredChunk]]:
    """The chunks the node lacks, asked about a step at a time, in put messages."""
    for step in by_size(chunks, HAS_STEP):
        present = await node.has_chunks([c.id for c in step])
        missing = [c for c, have in zip(step, present, strict=True) if not have]
        for batch in by_size(missing, MESSAGE):
            yield batch


def chunk_totals(data_dir: Path) -> tuple[int, int, int]:
    """Raw and stored bytes of the unique chunks, and their count."""
    from node.chunkstore import ChunkEntry
    from node.index import Index

    index = Index(data_dir / "index")
    try:
        def run(txn: object) -> tuple[int, int, int]:
            raw = stored = count = 0
            for _, value in txn.cursor(db=index.db("chunks")):  # type: ignore[attr-defined]
                entry = ChunkEntry.unpack(bytes(value))
                raw += entry.raw_length
                stored += entry.stored_length
                count += 1
            return raw, stored, count

        return index.read(run)
    finally:
        index.close()


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    pin_allocator()  # the node runs in this process: allocate as a shoal process does
    layers: list[bytes] = []
    for package, versions in RELEASES.items():
        for version in versions:
            layers.append(layer_of(fetch(package, version)))
    unique = {hashlib.sha256(layer).digest(): len(layer) for layer in layers}
    logical = sum(unique.values())
    with tempfile.TemporaryDirectory() as tmp:
        seconds, cpu = asyncio.run(ingest(Path(tmp), layers))
        on_disk = folder_size(Path(tmp))
        chunk_raw, chunk_stored, chunk_count = chunk_totals(Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        node_seconds, node_cpu = asyncio.run(node_ingest(data, layers))
        node_on_disk = folder_size(data)
    saved = 1 - on_disk / logical
    figures = {
        "layers": len(layers), "unique_blob_bytes": logical, "data_folder_bytes": on_disk,
        "saved_vs_whole_blob_dedup": round(saved, 4),
        "unique_chunks": chunk_count, "unique_chunk_raw_bytes": chunk_raw,
        "unique_chunk_stored_bytes": chunk_stored,
        "saved_by_chunk_dedup_alone": round(1 - chunk_raw / logical, 4),
        "embedded_ingest_mb_per_s": round(mb_per_s(logical, seconds), 1),
        "embedded_ingest_cores_busy": round(cpu / seconds, 2),
        "node_ingest_mb_per_s": round(mb_per_s(logical, node_seconds), 1),
        "node_ingest_cpu_ms_per_mb": round(node_cpu * 1e3 / (logical / 1e6), 2),
        "node_data_folder_bytes": node_on_disk,
        "node_saved_vs_whole_blob_dedup": round(1 - node_on_disk / logical, 4),
    }
    print(f"{len(layers)} layers, {logical / 1e6:.1f} MB of unique blobs -> "
          f"{on_disk / 1e6:.1f} MB on disk: {saved:.1%} saved beyond whole-blob dedup")
    print(f"  chunk dedup alone: {figures['saved_by_chunk_dedup_alone']:.1%} saved, "
          f"{chunk_count} unique chunks of {chunk_raw / chunk_count / 1024:.1f} KiB on average; "
          f"zstd then stores {chunk_stored / 1e6:.1f} MB")
    print(f"  ingest, embedded (chunking included): {figures['embedded_ingest_mb_per_s']} MB/s, "
          f"{figures['embedded_ingest_cores_busy']} cores busy")
    print(f"  ingest, node over gRPC (chunks cut beforehand): "
          f"{figures['node_ingest_mb_per_s']} MB/s, node CPU "
          f"{figures['node_ingest_cpu_ms_per_mb']} ms per MB; its data folder "
          f"{node_on_disk / 1e6:.1f} MB ({figures['node_saved_vs_whole_blob_dedup']:.1%} saved)")
    save("dedup", figures)


if __name__ == "__main__":
    main()
