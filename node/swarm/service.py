"""The swarm's gRPC services: `Swarm` (announces and holder lists, on owners) and `Peer`
(chunk transfer, on owners and edges), and the counters they keep.

Origin protection is the `Peer` service's cap on concurrent streams: past it, a requester
gets a single `busy` message listing the blob's holders instead of bytes (a message, not
RESOURCE_EXHAUSTED with trailing metadata, so the holders are typed and need no parsing).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from node.api import StoredChunk
from node.errors import NodeError
from node.grouping import by_size, by_size_async
from node.rpc import convert, framing
from node.rpc.options import MESSAGE_BYTES
from node.rpc.status import status_of
from node.swarm.holders import DEFAULT_LIMIT, HolderBook, Holding, from_bits, to_bits
from node.swarm.ratelimit import TokenBucket
from shoal.v1 import swarm_pb2, swarm_pb2_grpc

log = logging.getLogger(__name__)

Ctx = grpc.aio.ServicerContext[Any, Any]

DEFAULT_SERVE_LIMIT = 8     # concurrent Fetch streams: a few saturate a link, more only queue
BUSY_RETRY_MS = 200
OWNER_RUN_BYTES = 256 << 10


class ChunkSource(Protocol):
    def chunk_runs(self, ids: Sequence[bytes]) -> AsyncIterator[Sequence[StoredChunk]]:
        """Chunks in the order asked, as stored, in runs of at most about MESSAGE_BYTES:
        each run is what the source has at hand, sent on at once. NotFound at the first
        chunk not held."""
        ...


class ChunkReader(Protocol):
    def get_chunks(self, ids: Sequence[bytes]) -> AsyncIterator[StoredChunk]: ...


class Runs:
    """A ChunkSource over a store that yields chunks one by one (a node's, a cluster
    member's): runs of `run_bytes`.

    An owner sends small runs (OWNER_RUN_BYTES): an edge relays a chunk only once it has
    landed, so the first relay of a piece still on its way from the owner forwards it a
    quarter of a piece behind, not a whole piece.
    """

    def __init__(self, store: ChunkReader, run_bytes: int) -> None:
        self.store = store
        self.run_bytes = run_bytes

    async def chunk_runs(self, ids: Sequence[bytes]) -> AsyncIterator[Sequence[StoredChunk]]:
        async for run in by_size_async(self.store.get_chunks(ids), self.run_bytes):
            yield run


@dataclass(slots=True)
class PeerCounters:
    sent_bytes: int = 0         # chunk bytes (as stored) sent to requesters
    sent_chunks: int = 0
    busy: int = 0               # requests answered busy
    redirects: int = 0          # requests sent to a holder of what they asked
    serving: int = 0            # streams in progress


def holders_pb(book: HolderBook | None, digest: str, exclude: str, limit: int = DEFAULT_LIMIT
               ) -> tuple[int, list[swarm_pb2.Holder]]:
    if book is None:
        return 0, []
    count, found = book.holders(digest, exclude, limit)
    return count, [swarm_pb2.Holder(address=a, held=from_bits(b, count)) for a, b in found]


async def _abort(context: Ctx, exc: BaseException) -> None:
    if isinstance(exc, NodeError):
        await context.abort(status_of(exc), str(exc))
    log.exception("unexpected error in a swarm call")
    await context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")


async def _compress(context: Ctx) -> None:
    """Gzip this call's answer: holder bitmaps (a bit a chunk, 1.6 KiB per holder of a
    256 MiB blob) come in long runs, and they leave on the owner's uplink, the one link
    every byte of a swarm pull crosses. Measured: 7 holders' lists, 11.8 KiB -> 1.2 KiB.
    Chunks are never sent this way: they are zstd'ed or incompressible already.

    `context.set_compression` has no effect in gRPC Python (grpc/grpc#34690); the header
    it is meant to set does, sent as initial metadata before the answer."""
    await context.send_initial_metadata((("grpc-internal-encoding-request", "gzip"),))


class SwarmService(swarm_pb2_grpc.SwarmServicer):
    def __init__(self, book: HolderBook) -> None:
        self.book = book

    async def Announce(self, request: swarm_pb2.AnnounceRequest, context: Ctx
                       ) -> swarm_pb2.AnnounceResponse:
        lease = int(self.book.lease)
        if not request.holder:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "announce without a holder")
        if request.leaving:
            self.book.leave(request.holder)
            return swarm_pb2.AnnounceResponse(lease_seconds=lease)
        holdings = [Holding(b.digest, b.chunk_count, to_bits(b.gained, b.chunk_count),
                            to_bits(b.dropped, b.chunk_count)) for b in request.blobs]
        known = self.book.announce(request.holder, holdings, full=request.full)
        return swarm_pb2.AnnounceResponse(resync=not known, lease_seconds=lease)

    async def Holders(self, request: swarm_pb2.HoldersRequest, context: Ctx
                      ) -> swarm_pb2.HoldersResponse:
        limit = min(request.limit or DEFAULT_LIMIT, 256)
        for holder in request.unreachable[:16]:
            self.book.suspect(holder)
        count, holders = holders_pb(self.book, request.digest, request.exclude, limit)
        if holders:
            await _compress(context)
        return swarm_pb2.HoldersResponse(chunk_count=count, holders=holders)


class PeerService(swarm_pb2_grpc.PeerServicer):
    """Serves chunks from `source`, at most `limit` streams at once.

    On an owner, `book` lists holders in busy answers, and `chunk_count` (the recipe
    length of a blob) lets it list a requester as holder of what it was just sent.
    """

    def __init__(self, source: ChunkSource, limit: int = DEFAULT_SERVE_LIMIT,
                 book: HolderBook | None = None,
                 chunk_count: Callable[[str], Awaitable[int | None]] | None = None,
                 upload: TokenBucket | None = None) -> None:
        self.source = source
        self.limit = limit
        self.upload = upload
        self.book = book
        self.chunk_count = chunk_count
        self.counters = PeerCounters()

    async def Fetch(self, request: swarm_pb2.FetchRequest, context: Ctx
                    ) -> AsyncIterator[swarm_pb2.FetchResponse]:
        # Messages framed here (node/rpc/framing.py; see add_peer_service): the chunks
        # through encode_chunks, the rare busy answer through protobuf.
        counters = self.counters
        if counters.serving >= self.limit:
            counters.busy += 1
            known, holders = holders_pb(self.book, request.digest, request.requester)
            await _compress(context)
            yield swarm_pb2.FetchResponse(busy=swarm_pb2.Busy(
                holders=holders, chunk_count=known,
                retry_after_ms=BUSY_RETRY_MS)).SerializeToString()  # type: ignore[misc]
            return
        counters.serving += 1
        try:
            ids = convert.split_ids(request.ids)
            if self.book is not None and self.chunk_count is not None and request.requester:
                elsewhere = await self._route(request, len(ids))
                if elsewhere is not None:
                    counters.redirects += 1
                    await _compress(context)
                    yield swarm_pb2.FetchResponse(  # type: ignore[misc]
                        busy=elsewhere).SerializeToString()
                    return
            async for run in self.source.chunk_runs(ids):
                for group in by_size(run, MESSAGE_BYTES):
                    # Counted as handed to gRPC: the generator resumes after a yield only
                    # when the next message is wanted, so a count after would lag.
                    size = sum(len(c.data) for c in group)
                    if self.upload is not None:
                        await self.upload.take(size)
                    self._sent(len(group), size)
                    yield framing.encode_chunks(group)  # type: ignore[misc]
        except (NodeError, ValueError, OSError) as exc:
            await _abort(context, exc)
        finally:
            counters.serving -= 1

    async def _route(self, request: swarm_pb2.FetchRequest, chunks: int
                     ) -> swarm_pb2.Busy | None:
        """Where the requester should get these chunks instead, or None to serve them
        (and list the requester as their holder from now on).

        Listing before the first byte is what makes the origin send a chunk about once:
        an edge asking for the same chunks a moment later is redirected to the first
        (which serves chunks as they land) rather than served again. If that transfer
        fails, the second edge asks again with `direct` and is served; the first's lease
        ends its listing if it died. Check and listing run with no await in between, so
        two simultaneous requests cannot both be served.
        """
        assert self.book is not None and self.chunk_count is not None
        count = await self.chunk_count(request.digest)
        if count is None or request.first_index + chunks > count:
            return None
        bits = ((1 << chunks) - 1) << request.first_index
        if not request.direct:
            _, holders = self.book.holders(request.digest, request.requester)
            covering = [(a, b) for a, b in holders if b & bits == bits]
            if covering:
                return swarm_pb2.Busy(chunk_count=count, retry_after_ms=0, holders=[
                    swarm_pb2.Holder(address=a, held=from_bits(b, count)) for a, b in covering])
        self.book.gained(request.requester, request.digest, count, bits)
        return None

    def _sent(self, chunks: int, size: int) -> None:
        self.counters.sent_bytes += size
        self.counters.sent_chunks += chunks


def add_owner_services(server: grpc.aio.Server, store: ChunkReader, book: HolderBook,
                       chunk_count: Callable[[str], Awaitable[int | None]],
                       limit: int = DEFAULT_SERVE_LIMIT) -> PeerService:
    """Swarm and Peer on an owner node; returns the Peer service (for its counters)."""
    swarm_pb2_grpc.add_SwarmServicer_to_server(SwarmService(book), server)
    peer = PeerService(Runs(store, OWNER_RUN_BYTES), limit, book, chunk_count)
    add_peer_service(server, peer)
    return peer


def add_peer_service(server: grpc.aio.Server, peer: PeerService) -> None:
    """Register `peer`, its Fetch answers sent as the framed bytes it yields."""
    framing.add_framed(server, swarm_pb2_grpc.add_PeerServicer_to_server, peer,
                       reads=("Fetch",))
