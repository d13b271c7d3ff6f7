"""The gRPC services called directly, with a stand-in context: what a handler does when
the RPC ends in ways a real client can only trigger by timing."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from nodetest import chunk_pb, encode

from node.local import LocalNode
from node.rpc.server import ChunkStoreService
from shoal.v1 import chunks_pb2


class CancelledContext:
    """What the handler can see of an RPC the client has cancelled."""

    def cancelled(self) -> bool:
        return True

    def done(self) -> bool:
        return True

    async def abort(self, code: object, details: str = "") -> None:
        raise RuntimeError(f"aborted: {code} {details}")


async def test_a_put_whose_stream_ended_by_cancellation_commits_nothing(scratch: Path) -> None:
    """On a client cancel, grpc's server-side request iterator may simply end (its read
    returns EOF) before the handler task is cancelled; the handler must not take that end
    for a complete stream."""
    chunks = encode(os.urandom(300_000))
    node = await LocalNode.open(scratch / "data", verify_puts=True)
    try:
        async def requests() -> AsyncIterator[chunks_pb2.PutChunksRequest]:
            yield chunks_pb2.PutChunksRequest(chunks=[chunk_pb(c) for c in chunks])

        service = ChunkStoreService(node)
        # An abort or a cancellation error is fine; storing is not.
        with contextlib.suppress(Exception):
            await service.Put(requests(), CancelledContext())  # type: ignore[arg-type]
        stored = sum(await node.has_chunks([c.id for c in chunks]))
        assert stored == 0, f"{stored} chunks of a cancelled stream became visible"
    finally:
        await node.close()
