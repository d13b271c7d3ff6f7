"""Calls an edge makes into the swarm: Holders and Announce to owners, Fetch to owners and
peers. Every call has a deadline; a Fetch stream also fails when a message takes longer
than `idle` to come, so a peer that hangs is dropped as fast as one that dies."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from node.api import StoredChunk
from node.errors import NodeError, Unavailable
from node.rpc import framing
from node.rpc.options import CLIENT_OPTIONS
from node.rpc.status import error_of
from node.rpc.tls import TlsFiles
from node.swarm.holders import Holding, from_bits, to_bits
from shoal.v1 import swarm_pb2, swarm_pb2_grpc

UNARY_DEADLINE = 5.0        # holders and announces are small: a slow answer is a dead owner
FETCH_DEADLINE = 300.0      # a whole piece (a few MiB) over the slowest link we expect
FETCH_IDLE = 15.0           # longest wait for one ~1 MiB message (a peer waits up to 10 s
                            # for chunks still landing before it answers)
MAX_CHANNELS = 128


@dataclass(frozen=True, slots=True)
class HolderList:
    chunk_count: int
    holders: list[tuple[str, int]]  # (address, bitmap as int)


class Busy(Exception):
    """The server is at its cap: try `holders`, or again after `retry_after` seconds."""

    def __init__(self, holders: HolderList, retry_after: float) -> None:
        super().__init__("busy")
        self.holders = holders
        self.retry_after = retry_after


def _holder_list(count: int, holders: Sequence[swarm_pb2.Holder]) -> HolderList:
    return HolderList(count, [(h.address, to_bits(h.held, count)) for h in holders])


def _error(exc: grpc.aio.AioRpcError) -> NodeError:
    return error_of(exc.code(), exc.details() or "")


# Holders and Announce travel on a connection of their own, not beside Fetch streams: an
# answer written behind a Fetch's bytes waits for the unsent ones in the owner's socket
# buffer (p2p_fanout, N=8: holder lists took up to 1.4 s, 1 s at the 90th percentile,
# and each host started its next fetches only when one came). A separate subchannel pool
# is what makes gRPC open a second connection to the same address.
CONTROL_OPTIONS = [*CLIENT_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]


class SwarmClient:
    """Per address, one channel for Fetch streams and one for Holders and Announce; the
    least recently used closed past MAX_CHANNELS."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self._tls = tls
        self._channels: OrderedDict[tuple[str, bool], grpc.aio.Channel] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def _channel(self, address: str, control: bool = False) -> grpc.aio.Channel:
        key = (address, control)
        channel = self._channels.get(key)
        if channel is None:
            options = CONTROL_OPTIONS if control else CLIENT_OPTIONS
            if self._tls is not None:
                channel = grpc.aio.secure_channel(address, self._tls.channel_credentials(),
                                                  options=options)
            else:
                channel = grpc.aio.insecure_channel(address, options=options)
            self._channels[key] = channel
            while len(self._channels) > MAX_CHANNELS:
                _, old = self._channels.popitem(last=False)
                task = asyncio.create_task(old.close(grace=5.0))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._channels.move_to_end(key)
        return channel

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        for channel in channels:
            await channel.close(None)
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def holders(self, owner: str, digest: str, exclude: str,
                      unreachable: Sequence[str] = ()) -> HolderList:
        stub = swarm_pb2_grpc.SwarmStub(self._channel(owner, control=True))
        request = swarm_pb2.HoldersRequest(digest=digest, exclude=exclude,
                                           unreachable=list(unreachable))
        try:
            reply = await stub.Holders(request, timeout=UNARY_DEADLINE)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return _holder_list(reply.chunk_count, reply.holders)

    async def announce(self, owner: str, holder: str, holdings: Sequence[Holding],
                       full: bool = False, leaving: bool = False) -> bool:
        """True when the owner asks for a full resend."""
        request = swarm_pb2.AnnounceRequest(
            holder=holder, full=full, leaving=leaving,
            blobs=[swarm_pb2.BlobHoldings(digest=h.digest, chunk_count=h.chunk_count,
                                          gained=from_bits(h.gained, h.chunk_count),
                                          dropped=from_bits(h.dropped, h.chunk_count))
                   for h in holdings])
        stub = swarm_pb2_grpc.SwarmStub(self._channel(owner, control=True))
        try:
            reply = await stub.Announce(request, timeout=UNARY_DEADLINE)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        return bool(reply.resync)

    async def fetch(self, address: str, digest: str, first_index: int, ids: Sequence[bytes],
                    requester: str, direct: bool = False) -> AsyncIterator[list[StoredChunk]]:
        """The chunks asked, in order, a message at a time. Busy when the server is at its
        cap; NotFound when it lacks a chunk (after those before it); Unavailable when it
        fails, hangs or hangs up."""
        fetch = self._channel(address).unary_stream(
            "/shoal.v1.Peer/Fetch", request_serializer=swarm_pb2.FetchRequest.SerializeToString,
            response_deserializer=framing.decode_fetch)  # framed: node/rpc/framing.py
        call = fetch(swarm_pb2.FetchRequest(digest=digest, first_index=first_index,
                                            ids=b"".join(ids), requester=requester,
                                            direct=direct),
                     timeout=FETCH_DEADLINE)
        messages: AsyncIterator[list[StoredChunk] | swarm_pb2.Busy] = aiter(call)
        try:
            while True:
                try:
                    async with asyncio.timeout(FETCH_IDLE):
                        message = await anext(messages)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise Unavailable(f"{address} sent nothing for {FETCH_IDLE:.0f} s") from None
                if isinstance(message, swarm_pb2.Busy):
                    raise Busy(_holder_list(message.chunk_count, message.holders),
                               message.retry_after_ms / 1000)
                yield message
        except grpc.aio.AioRpcError as exc:
            raise _error(exc) from None
        finally:
            call.cancel()
