"""run_gateway: the entry point the CLI serves with."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from gateway.server import run_gateway
from node.local import LocalNode


async def test_serves_until_told_to_stop(tmp_path: Path) -> None:
    node = await LocalNode.open(tmp_path / "node")
    try:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        server = asyncio.create_task(run_gateway(node, "127.0.0.1", 0, stop.wait(),
                                                 on_ready=ready.set_result))
        port = await asyncio.wait_for(ready, 10)
        async with (aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/v2/") as r):
            assert r.status == 200
            assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0"
        stop.set()
        await asyncio.wait_for(server, 10)
        async with aiohttp.ClientSession() as session:
            try:
                await session.get(f"http://127.0.0.1:{port}/v2/")
                raise AssertionError("still serving after stop")
            except aiohttp.ClientConnectionError:
                pass
    finally:
        await node.close()
