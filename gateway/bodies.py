"""Request and response bodies as streams: nothing here holds more than one piece.

Every wait on the network is bounded: a client that stops sending or stops reading
loses its request instead of holding a handler (and its storage session) forever.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator

from aiohttp import ClientPayloadError, web
from aiohttp.http_exceptions import HttpProcessingError

from gateway.errors import BLOB_UPLOAD_INVALID, SIZE_INVALID, RegistryError
from gateway.metrics import METRICS

# Below this a piece is hashed on the event loop; above it hashlib drops the GIL and a
# thread keeps the loop free for other requests.
_THREAD_HASH_MIN = 64 * 1024


async def request_pieces(request: web.Request, idle_timeout: float,
                         expected: int | None = None) -> AsyncIterator[bytes]:
    """The request body as it arrives. With `expected`, a body of any other length fails
    with SIZE_INVALID before its last piece is handed on, so a consumer that commits only
    at the end of the stream commits nothing."""
    received = 0
    counter = request.app[METRICS].received
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                piece = await request.content.readany()
        except TimeoutError:
            raise RegistryError(BLOB_UPLOAD_INVALID, "request body stalled") from None
        except (ClientPayloadError, HttpProcessingError, ConnectionError) as error:
            raise RegistryError(BLOB_UPLOAD_INVALID, "request body incomplete",
                                str(error)[:200]) from None
        if not piece:
            break
        received += len(piece)
        counter.inc(len(piece))
        if expected is not None and received > expected:
            raise RegistryError(SIZE_INVALID, f"body longer than the {expected} bytes declared")
        yield piece
    if expected is not None and received != expected:
        raise RegistryError(SIZE_INVALID,
                            f"body of {received} bytes, {expected} declared")


async def read_limited(request: web.Request, limit: int, idle_timeout: float) -> bytes | None:
    """The whole body when it is at most `limit` bytes, None when it is longer."""
    if request.content_length is not None and request.content_length > limit:
        return None
    buffer = bytearray()
    async for piece in request_pieces(request, idle_timeout):
        buffer += piece
        if len(buffer) > limit:
            return None
    return bytes(buffer)


async def hash_stream(pieces: AsyncIterable[bytes | memoryview], algorithm: str) -> str:
    """`algorithm:hex` of a stream, hashing large pieces off the event loop."""
    hasher = hashlib.new(algorithm)
    async for piece in pieces:
        if len(piece) >= _THREAD_HASH_MIN:
            await asyncio.to_thread(hasher.update, piece)
        else:
            hasher.update(piece)
    return f"{algorithm}:{hasher.hexdigest()}"


async def send_pieces(response: web.StreamResponse,
                      pieces: AsyncIterable[bytes | memoryview],
                      write_timeout: float) -> None:
    async for piece in pieces:
        async with asyncio.timeout(write_timeout):
            await response.write(piece)
