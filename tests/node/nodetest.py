"""Helpers for the node tests: real node processes, API handles, test data.

The module has a name of its own (not `helpers`): tests/node has no __init__.py (a package
named `node` would shadow the real one), so its modules are imported by basename.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.api import Codec, NodeAPI, StoredChunk
from node.chunking import StreamChunker
from node.codec import CompressionProbe
from node.recipe import Recipe
from node.rpc.tls import TlsFiles
from shoal.v1 import chunks_pb2

START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class Clock:
    """Seconds that move only when a test says so (set `now`)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_bytes(size: int, seed: int = 0) -> bytes:
    """Incompressible bytes, the same for the same seed."""
    return random.Random(seed).randbytes(size)


def text_bytes(size: int, seed: int = 0) -> bytes:
    """Compressible but not periodic bytes: words drawn from a small vocabulary."""
    rng = random.Random(seed)
    words = [b"layer", b"chunk", b"manifest", b"registry", b"shoal", b"tar", b"\n", b"blob"]
    out = bytearray()
    while len(out) < size:
        out += b" ".join(rng.choices(words, k=256))
    return bytes(out[:size])


def cut(data: bytes) -> list[bytes]:
    chunker = StreamChunker()
    return [bytes(c) for c in chunker.feed(data) + chunker.finish()]


def encode(data: bytes) -> list[StoredChunk]:
    """`data` cut and encoded the way the write path does it."""
    probe = CompressionProbe()
    return [probe.encode(raw) for raw in cut(data)]


def chunk_pb(c: StoredChunk) -> chunks_pb2.Chunk:
    """`c` as the generated classes carry it: the reference the hand framing is held to
    (node/rpc/framing.py), and how another client would send it."""
    return chunks_pb2.Chunk(id=c.id, codec=int(c.codec), raw_length=c.raw_length,  # type: ignore[arg-type]
                            data=bytes(c.data))


def chunk_of_pb(c: chunks_pb2.Chunk) -> StoredChunk:
    return StoredChunk(c.id, Codec(c.codec), c.raw_length, c.data)


def recipe_of(chunks: Sequence[StoredChunk]) -> Recipe:
    return Recipe.from_entries((c.id, c.raw_length) for c in chunks)


async def one_batch(*batches: Sequence[StoredChunk]) -> AsyncIterator[Sequence[StoredChunk]]:
    for batch in batches:
        yield batch


async def pieces(data: bytes, size: int = 1 << 20) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def collect(stream: AsyncIterable[bytes]) -> bytes:
    out = bytearray()
    async for piece in stream:
        out += piece
    return bytes(out)


async def store_blob(api: NodeAPI, data: bytes) -> tuple[str, Recipe]:
    """Put `data`'s chunks and commit it as a blob; returns its digest and recipe."""
    chunks = encode(data)
    await api.put_chunks(one_batch(chunks))
    recipe = recipe_of(chunks)
    digest = sha256(data)
    await api.commit_blob(digest, recipe)
    return digest, recipe


@dataclass
class ApiHandle:
    """A NodeAPI to open inside the test's event loop (gRPC channels belong to a loop).

    The node tests' conftest replaces a test argument holding one of these by the opened
    API, and closes it after the test.
    """

    name: str
    open: Callable[[], Awaitable[NodeAPI]]


class NodeProcess:
    """`python -m shoal node` as a child process, on a free port, stopped by its PID."""

    def __init__(self, data: Path, workdir: Path, args: Sequence[str] = (),
                 listen: str = "127.0.0.1:0", tls: TlsFiles | None = None) -> None:
        self.tls = tls
        self.data = data
        self.workdir = workdir
        self.args = list(args)
        self.listen = listen
        self.port_file = workdir / "port"
        self.log_path = workdir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> NodeProcess:
        self.port_file.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shoal", "node", "--data", str(self.data),
                 "--listen", self.listen, "--port-file", str(self.port_file), *self.args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            text = self.port_file.read_text() if self.port_file.exists() else ""
            if text.endswith("\n"):
                self.port = int(text)
                break
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"node wrote no port file:\n{self.log()}")
            time.sleep(0.02)
        self.wait_serving(deadline)
        return self

    def wait_serving(self, deadline: float) -> None:
        channel = (grpc.secure_channel(self.target, self.tls.channel_credentials())
                   if self.tls is not None else grpc.insecure_channel(self.target))
        with channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"node never became healthy:\n{self.log()}")
                time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait; returns the exit code (SIGKILL after `timeout`)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: no chance to flush or close anything."""
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)
