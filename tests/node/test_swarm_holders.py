"""The owner's holder book: additive announces, leases, resync, bounds, redirect data; and
where a blob's owners (the holder books) are in a cluster."""

from __future__ import annotations

import asyncio
import contextlib
import random

import grpc
from nodetest import Clock

from node.cluster import placement
from node.cluster.config import ClusterConfig, Member
from node.cluster.membership import Membership
from node.swarm.client import SwarmClient
from node.swarm.directory import ClusterOwners
from node.swarm.holders import HolderBook, Holding, from_bits, to_bits
from node.swarm.service import SwarmService
from shoal.v1 import swarm_pb2_grpc


def test_announces_add_and_drop_bits() -> None:
    book = HolderBook()
    assert book.announce("a:1", [Holding("sha256:x", 10, gained=0b0111)], full=True)
    assert book.announce("a:1", [Holding("sha256:x", 10, gained=0b1000, dropped=0b0001)])
    assert book.holders("sha256:x") == (10, [("a:1", 0b1110)])
    book.announce("a:1", [Holding("sha256:x", 10, dropped=0b1110)])
    assert book.holders("sha256:x") == (0, [])


def test_an_unknown_holder_is_asked_to_resend_everything() -> None:
    book = HolderBook()
    assert not book.announce("a:1", [])  # first heartbeat: resync wanted
    assert book.announce("a:1", [])
    assert book.announce("a:1", [Holding("sha256:x", 4, gained=1)], full=True)


def test_leases_expire_and_heartbeats_renew_them() -> None:
    clock = Clock()
    book = HolderBook(lease=10, clock=clock)
    book.announce("a:1", [Holding("sha256:x", 4, gained=0b1111)], full=True)
    book.announce("b:1", [Holding("sha256:x", 4, gained=0b0011)], full=True)
    clock.now = 8
    book.announce("b:1", [])
    clock.now = 12
    assert book.holders("sha256:x") == (4, [("b:1", 0b0011)])
    assert len(book) == 1


def test_leaving_forgets_the_holder_and_the_asker_is_left_out() -> None:
    book = HolderBook()
    for name in ("a:1", "b:1"):
        book.announce(name, [Holding("sha256:x", 4, gained=0b1111)], full=True)
    assert [a for a, _ in book.holders("sha256:x", exclude="a:1")[1]] == ["b:1"]
    book.leave("b:1")
    assert book.holders("sha256:x", exclude="a:1") == (0, [])


def test_a_full_announce_replaces_what_was_held() -> None:
    book = HolderBook()
    book.announce("a:1", [Holding("sha256:x", 4, gained=0b1111)], full=True)
    book.announce("a:1", [Holding("sha256:y", 2, gained=0b01)], full=True)
    assert book.holders("sha256:x") == (0, [])
    assert book.holders("sha256:y") == (2, [("a:1", 0b01)])


def test_tables_are_bounded() -> None:
    book = HolderBook(max_holders=3, max_blobs=2)
    for i in range(5):
        book.announce(f"h:{i}", [Holding("sha256:x", 1, gained=1)], full=True)
    assert len(book) == 3
    assert sorted(a for a, _ in book.holders("sha256:x")[1]) == ["h:2", "h:3", "h:4"]
    book.announce("h:4", [Holding(f"sha256:{d}", 1, gained=1) for d in "abc"])
    # h:4 keeps its two most recent blobs: it no longer lists x (nor a).
    assert sorted(book.holders("sha256:x")[1]) == [("h:2", 1), ("h:3", 1)]
    assert book.holders("sha256:a") == (0, [])
    assert book.holders("sha256:c") == (1, [("h:4", 1)])


def test_answers_are_capped_at_the_limit() -> None:
    book = HolderBook()
    for i in range(50):
        book.announce(f"h:{i}", [Holding("sha256:x", 3, gained=0b101)], full=True)
    count, found = book.holders("sha256:x", limit=8)
    assert count == 3 and len(found) == 8 and len({a for a, _ in found}) == 8


def test_gained_lists_known_holders_only() -> None:
    book = HolderBook()
    book.gained("a:1", "sha256:x", 8, 0b11)
    assert book.holders("sha256:x") == (0, [])
    book.announce("a:1", [], full=True)
    book.gained("a:1", "sha256:x", 8, 0b11)
    assert book.holders("sha256:x") == (8, [("a:1", 0b11)])


def test_bitmaps_on_the_wire_are_lsb_first_and_trimmed() -> None:
    assert from_bits(0b1_0000_0001, 9) == b"\x01\x01"
    assert to_bits(b"\xff\xff", 9) == 0x1FF
    assert to_bits(b"", 5) == 0


def test_a_holder_reported_unreachable_goes_unless_it_heartbeats() -> None:
    clock = Clock()
    book = HolderBook(lease=10, clock=clock)
    for name in ("dead:1", "live:1"):
        book.announce(name, [Holding("sha256:x", 2, gained=0b11)], full=True)
    book.suspect("dead:1")
    book.suspect("live:1")
    clock.now = 3
    book.announce("live:1", [])
    clock.now = 6
    assert [a for a, _ in book.holders("sha256:x")[1]] == ["live:1"]
    clock.now = 14
    assert [a for a, _ in book.holders("sha256:x")[1]] == []  # its lease ran out


async def test_a_blobs_owners_in_a_cluster_are_its_first_live_members_by_placement() -> None:
    members = tuple(Member(f"node{i}", f"127.0.0.1:{7400 + i}") for i in range(1, 5))
    membership = Membership(ClusterConfig(members, replicas=2))
    try:
        directory = ClusterOwners(membership)
        digest = "sha256:" + "ab" * 32
        ranked = placement.rank(membership.peers, placement.BLOB, digest)
        assert directory.owners_of(digest) == [p.address for p in ranked[:2]]
        # A member down is replaced by the next in order: the stand-in that took its writes.
        ranked[0].mark(False, "test")
        assert directory.owners_of(digest) == [ranked[1].address, ranked[2].address]
        # With none known up, the owners by placement are asked all the same.
        for peer in membership.peers:
            peer.mark(False, "test")
        assert directory.owners_of(digest) == [p.address for p in ranked[:2]]
        assert sorted(directory.everyone()) == sorted(m.address for m in members)
    finally:
        await membership.close()


class CountingRelay:
    """A TCP relay in front of a server that counts the bytes the server sends back and
    the connections made. With `stall_first`, nothing comes back on the first connection:
    a link whose queue toward the client is full."""

    def __init__(self, port: int, stall_first: bool = False) -> None:
        self.port = port
        self.returned = 0
        self.connections = 0
        self._stall_first = stall_first
        self.server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self.connected.set()
        stalled = self._stall_first and self.connections == 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers += [writer, up_writer]
        back = None if stalled else asyncio.create_task(self._pipe(up_reader, writer, True))
        try:
            await self._pipe(reader, up_writer, count=False)
            if back is not None:
                await back
        finally:
            if back is not None:
                back.cancel()
            self._handlers.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    count: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(1 << 16):
                if count:
                    self.returned += len(data)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for writer in self._writers:
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self.server is not None:
            await self.server.wait_closed()


async def test_holder_lists_travel_compressed() -> None:
    """Holder bitmaps leave on the owner's uplink, which every byte of a swarm pull
    crosses: they are gzip'ed (gRPC Python's set_compression alone sends them raw)."""
    count = 13_000                      # the chunks of a 256 MiB blob
    book = HolderBook()
    rng = random.Random(5)
    for holder in range(7):
        bits = 0
        for piece in rng.sample(range(count // 50), 150):  # pieces of 50 chunks
            bits |= ((1 << 50) - 1) << (piece * 50)
        book.announce(f"10.0.0.{holder}:7401", [Holding("sha256:x", count, bits)])
    server = grpc.aio.server()
    swarm_pb2_grpc.add_SwarmServicer_to_server(SwarmService(book), server)
    relay = CountingRelay(server.add_insecure_port("127.0.0.1:0"))
    await server.start()
    client = SwarmClient()
    try:
        found = await client.holders(f"127.0.0.1:{await relay.start()}", "sha256:x", "me:1", [])
        assert len(found.holders) == 7
        raw = 7 * len(from_bits(0, count))
        assert 0 < relay.returned < raw / 4, (relay.returned, raw)
    finally:
        await client.close()
        await relay.close()
        await server.stop(None)


async def test_holder_lists_do_not_wait_behind_fetched_bytes() -> None:
    """An owner's answers to Holders must not queue behind the bytes of Fetch streams to
    the same edge (up to a second at N=8 in p2p_fanout): they travel on a connection of
    their own. Here the Fetch's connection brings nothing back at all."""
    book = HolderBook()
    book.announce("10.0.0.1:7401", [Holding("sha256:x", 10, 0b11)])
    server = grpc.aio.server()
    swarm_pb2_grpc.add_SwarmServicer_to_server(SwarmService(book), server)
    relay = CountingRelay(server.add_insecure_port("127.0.0.1:0"), stall_first=True)
    await server.start()
    client = SwarmClient()
    address = f"127.0.0.1:{await relay.start()}"

    async def fetch() -> None:
        async for _ in client.fetch(address, "sha256:x", 0, [bytes(32)], "me:1"):
            pass

    fetching = asyncio.create_task(fetch())
    try:
        async with asyncio.timeout(5):
            await relay.connected.wait()
        async with asyncio.timeout(3):
            found = await client.holders(address, "sha256:x", "me:1", [])
        assert [a for a, _ in found.holders] == ["10.0.0.1:7401"]
        assert relay.connections == 2
    finally:
        fetching.cancel()
        await asyncio.gather(fetching, return_exceptions=True)
        await client.close()
        await relay.close()
        await server.stop(None)
