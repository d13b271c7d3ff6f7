"""Client channel options against real connections: what a slow handshake and a restarted
server do to calls."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import grpc

from node.rpc.options import CLIENT_OPTIONS

METHOD = "/test.Echo/Call"


def _echo_handler() -> grpc.GenericRpcHandler:
    async def call(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    handler = grpc.unary_unary_rpc_method_handler(call)
    return grpc.method_handlers_generic_handler("test.Echo", {"Call": handler})


@contextlib.asynccontextmanager
async def echo_server(port: int = 0) -> AsyncIterator[int]:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_echo_handler(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    try:
        yield bound
    finally:
        await server.stop(None)


@contextlib.asynccontextmanager
async def slow_handshake_proxy(target: int, delay: float) -> AsyncIterator[int]:
    """A TCP proxy to `target` that holds the server's first bytes (its HTTP/2 SETTINGS)
    for `delay` seconds, as a server behind a full uplink or a busy loop sends them late."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   hold: float) -> None:
        try:
            first = True
            while data := await reader.read(65536):
                if first and hold:
                    await asyncio.sleep(hold)
                first = False
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    tasks: set[asyncio.Task[None]] = set()

    async def serve(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
        for task in (asyncio.create_task(pipe(client_r, server_w, 0.0)),
                     asyncio.create_task(pipe(server_r, client_w, delay))):
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    proxy = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield proxy.sockets[0].getsockname()[1]
    finally:
        proxy.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await proxy.wait_closed()


async def test_a_server_slow_to_send_its_settings_is_waited_for() -> None:
    """A connection whose handshake takes 0.6 s is a slow server, not a dead one: the call
    goes through (with a 250 ms connection timeout it failed UNAVAILABLE at once)."""
    async with (echo_server() as port, slow_handshake_proxy(port, 0.6) as proxied,
                grpc.aio.insecure_channel(f"127.0.0.1:{proxied}",
                                          options=CLIENT_OPTIONS) as channel):
        call = channel.unary_unary(METHOD)
        assert await call(b"ping", timeout=5.0) == b"ping"


async def test_a_restarted_server_is_reached_within_seconds() -> None:
    """Refused connections are retried after the short backoff, not the connection
    timeout: a call waiting for a server that comes up a second later gets through soon
    after it does."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}",
                                         options=CLIENT_OPTIONS) as channel:
        call = channel.unary_unary(METHOD)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await call(b"early", timeout=0.5)  # refused: the channel starts backing off
        await asyncio.sleep(1.0)
        async with echo_server(port):
            started = time.monotonic()
            assert await call(b"ping", timeout=10.0, wait_for_ready=True) == b"ping"
            assert time.monotonic() - started < 4.0
