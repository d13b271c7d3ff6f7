"""Who is up: one connection per member and a health check of each, every second.

A member is down from its first failed check (or a call that found it unreachable) until
a check succeeds again, so a dead or stopped node drops out of placement within about two
seconds and comes back as soon as it answers. Calls in flight to a member that goes down
are abandoned (`Peer.call`), so a stopped node costs a retry elsewhere, not a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from node.cluster import placement
from node.cluster.config import ClusterConfig, Member
from node.errors import Unavailable
from node.rpc.client import RemoteNode
from shoal.v1 import cluster_pb2_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")

CHECK_INTERVAL = 1.0
CHECK_DEADLINE = 1.0


class Peer:
    """A member and the client that reaches it."""

    def __init__(self, member: Member, config: ClusterConfig) -> None:
        self.id = member.id
        self.address = member.address
        self.node = RemoteNode(member.address, tls=config.tls)
        self.cluster = cluster_pb2_grpc.ClusterStub(self.node.channel)
        self.up = True  # optimistic until the first check: a new gateway can serve at once
        self.down_since = 0.0  # time.monotonic() when last seen going down
        self._down = asyncio.Event()

    def mark(self, up: bool, why: str = "") -> None:
        if up == self.up:
            return
        self.up = up
        if up:
            self._down = asyncio.Event()
            log.info("member %s (%s) is up", self.id, self.address)
        else:
            self.down_since = time.monotonic()
            self._down.set()
            log.warning("member %s (%s) is down: %s", self.id, self.address, why)

    async def call(self, work: Awaitable[T]) -> T:
        """`work` against this member; Unavailable as soon as the member is seen down, and
        the member marked down when the call finds it unreachable."""
        if not self.up:
            with contextlib.suppress(BaseException):
                if asyncio.iscoroutine(work):
                    work.close()
            raise Unavailable(f"member {self.id} is down")
        task = asyncio.ensure_future(work)
        down = asyncio.ensure_future(self._down.wait())
        try:
            await asyncio.wait({task, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            down.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise Unavailable(f"member {self.id} went down during the call")
        try:
            return task.result()
        except Unavailable as exc:
            self.mark(False, str(exc))
            raise


class Membership:
    def __init__(self, config: ClusterConfig, interval: float = CHECK_INTERVAL) -> None:
        self.config = config
        self.peers = [Peer(m, config) for m in config.members]
        self._interval = interval
        self._watch: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Check every member once (so a dead one is known before the first request),
        then keep checking in the background."""
        await self.check_all()
        self._watch = asyncio.create_task(self._watch_forever())

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await asyncio.gather(*(p.node.close() for p in self.peers))

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(p) for p in self.peers))

    async def _check(self, peer: Peer) -> None:
        stub = health_pb2_grpc.HealthStub(peer.node.channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CHECK_DEADLINE)
        except grpc.aio.AioRpcError as exc:
            peer.mark(False, exc.code().name)
            return
        peer.mark(reply.status == health_pb2.HealthCheckResponse.SERVING, "not serving")

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check_all()

    def live(self) -> list[Peer]:
        return [p for p in self.peers if p.up]

    def by_id(self, member_id: str) -> Peer:
        for p in self.peers:
            if p.id == member_id:
                return p
        raise KeyError(member_id)

    def write_order(self, kind: bytes, key: bytes | str) -> list[Peer]:
        """Live members in `key`'s placement order: the first R take a write, the rest
        stand in, in order, for those that fail."""
        return [p for p in placement.rank(self.peers, kind, key) if p.up]

    def read_order(self, kind: bytes, key: bytes | str) -> list[Peer]:
        """Every member in placement order, the live ones first: a read tries the owners,
        then whoever may hold a copy written while an owner was down."""
        ranked = placement.rank(self.peers, kind, key)
        return [p for p in ranked if p.up] + [p for p in ranked if not p.up]

    def owners(self, kind: bytes, key: bytes | str) -> Sequence[Peer]:
        """The R members that own `key` when all are up."""
        return placement.owners(self.peers, kind, key, self.config.replicas)
