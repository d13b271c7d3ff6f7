"""Blob reads and deletes: HEAD, GET (whole or one Range), DELETE.

Bytes stream from the node in ~1 MiB pieces straight to the socket; a blob is never
held whole in memory, whatever its size.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.bodies import send_pieces
from gateway.context import gateway_of
from gateway.errors import BLOB_UNKNOWN, RANGE_INVALID, RegistryError
from gateway.names import parse_digest
from gateway.ranges import Unsatisfiable, parse_range
from gateway.routing import Params
from node import errors as node_errors

log = logging.getLogger(__name__)

WRITE_BUFFER = 512 << 10


def _etag(digest: str) -> str:
    return f'"{digest}"'


def not_modified(request: web.Request, etag: str) -> bool:
    wanted = request.headers.get("If-None-Match", "")
    return any(tag.strip() in (etag, "*") for tag in wanted.split(",")) if wanted else False


async def get(request: web.Request, params: Params) -> web.StreamResponse:
    """GET and HEAD /v2/<name>/blobs/<digest>."""
    gateway = gateway_of(request)
    name = params["name"]
    digest = str(parse_digest(params["digest"]))
    info = await gateway.api.stat_repository_blob(name, digest)
    if info is None:
        raise RegistryError(BLOB_UNKNOWN, detail={"digest": digest})
    headers = {
        "Docker-Content-Digest": digest,
        "ETag": _etag(digest),
        "Accept-Ranges": "bytes",
        # Content-addressed: the bytes behind a digest never change.
        "Cache-Control": "max-age=31536000",
    }
    if not_modified(request, headers["ETag"]):
        return web.Response(status=304, headers=headers)
    try:
        byte_range = parse_range(request.headers.get("Range"), info.size)
    except Unsatisfiable:
        raise RegistryError(RANGE_INVALID, headers={"Content-Range": f"bytes */{info.size}"},
                            detail={"size": info.size}) from None
    response = web.StreamResponse(status=200 if byte_range is None else 206, headers=headers)
    response.content_type = "application/octet-stream"
    offset, length = 0, info.size
    if byte_range is not None:
        offset, length = byte_range.start, byte_range.length
        response.headers["Content-Range"] = (
            f"bytes {byte_range.start}-{byte_range.end}/{info.size}")
    response.content_length = length
    if request.method == "HEAD" or length == 0:
        await response.prepare(request)
        await response.write_eof()
        return response
    pieces = aiter(gateway.api.read_blob(digest, offset, length))
    try:
        # The first piece is fetched before the status line goes out, so a blob deleted
        # since the stat is still a clean 404 rather than a cut connection.
        try:
            first = await anext(pieces)
        except (node_errors.NotFound, StopAsyncIteration):
            raise RegistryError(BLOB_UNKNOWN, detail={"digest": digest}) from None
        await response.prepare(request)
        if request.transport is not None:
            # With the default 64 KiB mark, each write waits for the socket to drain before
            # the next piece is handed over, which halved throughput on loopback. Past the
            # mark a whole piece still goes in before the write waits, so a slow client
            # holds this plus a piece here: the kernel's send buffer (up to 4 MiB, outside
            # our memory) is what keeps a fast one busy while the next piece comes.
            request.transport.set_write_buffer_limits(high=WRITE_BUFFER)
        try:
            body = _prepend(first, pieces)
            del first  # held here, a piece would stay alive for the whole response
            await send_pieces(response, body, gateway.config.write_timeout)
        except (node_errors.NodeError, TimeoutError, ConnectionError) as error:
            # Headers are gone: the only honest signal left is a body cut short of its
            # Content-Length, which every client checks.
            log.warning("blob %s to %s cut short: %r", digest, request.remote, error)
            if request.transport is not None:
                request.transport.close()
            return response
        await response.write_eof()
        return response
    finally:
        await _close(pieces)


async def _prepend(first: bytes | memoryview, rest: AsyncIterator[bytes | memoryview]
                   ) -> AsyncIterator[bytes | memoryview]:
    yield first
    del first
    async for piece in rest:
        yield piece


async def _close(pieces: AsyncIterator[bytes | memoryview]) -> None:
    close = getattr(pieces, "aclose", None)
    if close is not None:
        await close()


async def delete(request: web.Request, params: Params) -> web.StreamResponse:
    """DELETE /v2/<name>/blobs/<digest>: unlink from the repository; the node collects
    the bytes once nothing else uses them."""
    gateway = gateway_of(request)
    digest = str(parse_digest(params["digest"]))
    if not await gateway.api.unlink_blob(params["name"], digest):
        raise RegistryError(BLOB_UNKNOWN, detail={"digest": digest})
    return web.Response(status=202)
