"""Pulls are flow-controlled end to end: a client that stops reading stops the reads.

Clients open GETs of a large blob and then read nothing. The server may fill its buffers
(a piece or two per stage), then must wait. What it read from the node and what it holds
in memory are checked against bounds far below the blob's size, once it has stopped
reading; no assertion depends on timing (a slow machine only makes the check weaker).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from gwtest import sha256

from gateway.app import make_app
from gateway.server import SERVER_SETTINGS
from node.api import NodeAPI
from node.blobio import append_stream
from node.local import LocalNode
from node.rpc.client import RemoteNode
from node.rpc.server import start_server

BLOB = 96 << 20
READERS = 4
# Per stalled reader: node read-ahead, a piece in each stage, socket write buffer, and
# allocator slack; an unbounded stage would hold the whole blob (96 MiB) instead.
HELD_PER_READER = 16 << 20
SETTLE_POLLS = 10
POLL = 0.2


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class CountingNode(LocalNode):
    """A LocalNode that counts the bytes its reads hand out."""

    read_bytes = 0

    async def read_blob(self, digest: str, offset: int = 0, length: int | None = None
                        ) -> AsyncIterator[bytes | memoryview]:
        async for piece in super().read_blob(digest, offset, length):
            CountingNode.read_bytes += len(piece)
            yield piece


async def push(node: LocalNode, data: bytes) -> str:
    upload = await node.create_upload("flow/test")

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(data), 1 << 20):
            yield data[start:start + (1 << 20)]

    await append_stream(node, "flow/test", upload.id, 0, body())
    digest = sha256(data)
    await node.finish_upload("flow/test", upload.id, digest, len(data))
    return digest


async def stalled_get(port: int, digest: str) -> socket.socket:
    """A GET whose response is never read (a small receive buffer keeps the kernel's share
    small too)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await asyncio.get_running_loop().sock_sendall(
        sock, f"GET /v2/flow/test/blobs/{digest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


async def settled(value: Callable[[], int]) -> int:
    """`value` once it has stopped changing, or once it has stopped for long enough
    to show it (a server that never stops reading ends at the blob's size)."""
    last, same = value(), 0
    while same < SETTLE_POLLS:
        await asyncio.sleep(POLL)
        now = value()
        same = same + 1 if now == last else 0
        last = now
    return last


async def check_stalled_pulls(api: NodeAPI, digest: str) -> None:
    server = TestServer(make_app(api), **SERVER_SETTINGS)
    async with TestClient(server) as http:
        port = http.port
        assert port is not None
        CountingNode.read_bytes = 0
        before = rss()
        socks = [await stalled_get(port, digest) for _ in range(READERS)]
        try:
            read = await settled(lambda: CountingNode.read_bytes)
            grown = rss() - before
            bound = READERS * HELD_PER_READER
            assert read <= bound, f"{read >> 20} MiB read from the node for stalled clients"
            assert grown <= bound, f"RSS grew {grown >> 20} MiB for {READERS} stalled clients"
        finally:
            for sock in socks:
                sock.close()


@pytest.fixture
def blob() -> bytes:
    return os.urandom(BLOB)


async def test_a_stalled_pull_stops_reading_the_node(tmp_path: Path, blob: bytes) -> None:
    node = await CountingNode.open(tmp_path / "node")
    try:
        digest = await push(node, blob)
        await check_stalled_pulls(node, digest)
    finally:
        await node.close()


async def test_a_stalled_pull_over_grpc_stops_reading_the_node(tmp_path: Path, blob: bytes
                                                               ) -> None:
    """The same with the node behind gRPC: HTTP/2 flow control must hold the node's stream
    as well, with the receive window kept small."""
    node = await CountingNode.open(tmp_path / "node", verify_puts=True)
    grpc_server, port = await start_server(node, "127.0.0.1:0")
    remote = RemoteNode(f"127.0.0.1:{port}")
    try:
        digest = await push(node, blob)
        await check_stalled_pulls(remote, digest)
    finally:
        await remote.close()
        with contextlib.suppress(Exception):
            await grpc_server.stop(None)
        await node.close()
