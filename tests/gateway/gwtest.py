"""Helpers for the gateway tests: a gateway over a real LocalNode, and pushes."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import make_app
from gateway.context import GatewayConfig
from gateway.server import SERVER_SETTINGS
from node.local import LocalNode

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


@dataclass
class Registry:
    """An HTTP client on a gateway, and the node behind it for looking underneath."""

    http: TestClient[Any, Any]
    node: LocalNode

    @property
    def port(self) -> int:
        port = self.http.port
        assert port is not None
        return port

    async def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        r = await self.http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest},
                                 data=io.BytesIO(data),
                                 headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, await r.text()
        return digest

    async def push_manifest(self, repo: str, reference: str, manifest: dict[str, Any],
                            media_type: str = OCI_MANIFEST) -> tuple[str, bytes]:
        body = json.dumps(manifest).encode()
        r = await self.http.put(f"/v2/{repo}/manifests/{reference}", data=body,
                                headers={"Content-Type": media_type})
        assert r.status == 201, await r.text()
        return sha256(body), body

    async def push_image(self, repo: str, tag: str, layers: list[bytes] | None = None,
                         **extra: Any) -> tuple[str, bytes]:
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        config_digest = await self.push_blob(repo, config)
        descriptors = []
        for layer in layers if layers is not None else [b"layer-one", b"layer-two"]:
            descriptors.append({"mediaType": LAYER, "digest": await self.push_blob(repo, layer),
                                "size": len(layer)})
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": config_digest,
                               "size": len(config)},
                    "layers": descriptors, **extra}
        return await self.push_manifest(repo, tag, manifest)


OpenRegistry = Callable[..., AbstractAsyncContextManager[Registry]]


def registry_opener(data_dir: Path) -> OpenRegistry:
    @asynccontextmanager
    async def open_it(config: GatewayConfig | None = None) -> AsyncIterator[Registry]:
        node = await LocalNode.open(data_dir)
        try:
            server = TestServer(make_app(node, config), **SERVER_SETTINGS)
            async with TestClient(server) as http:
                yield Registry(http, node)
        finally:
            await node.close()

    return open_it


async def send_raw(port: int, head: str, body: bytes = b"") -> None:
    """Send a request and hang up without waiting: a client that dies mid-request."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def raw_request(port: int, method: str, target: str, body: bytes = b""
                      ) -> tuple[int, bytes]:
    """Status and body of a request sent byte for byte: HTTP clients normalise paths
    (`a/../b` becomes `b`) before a server could see what a hostile one sends."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, payload = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), payload


async def error_code(response: ClientResponse) -> str:
    """The first error code of a spec error body (and a check that it is one)."""
    body = await response.json(content_type=None)
    assert isinstance(body["errors"], list) and body["errors"], body
    entry = body["errors"][0]
    assert isinstance(entry["message"], str)
    return str(entry["code"])
