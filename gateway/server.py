"""Serving the gateway on a TCP port until cancelled.

The caller picks the event loop (the CLI runs under uvloop) and owns the NodeAPI.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.app import make_app
from gateway.auth.guard import Guard
from gateway.context import GatewayConfig
from gateway.metrics import GatewayMetrics
from gateway.quota import Quotas
from node.api import NodeAPI

log = logging.getLogger(__name__)

# aiohttp server settings every gateway runs with (tests use them too).
SERVER_SETTINGS: dict[str, Any] = {
    # Blobs are stored as the bytes sent: a Content-Encoding must not be undone (and a
    # decompression bomb must not be expanded) before the digest is checked.
    "auto_decompress": False,
    # Bytes buffered per connection; reading pauses past twice this.
    "read_bufsize": 256 * 1024,
    "keepalive_timeout": 75.0,
    # Absurd header lines get a 400 from the parser before any handler runs.
    "max_line_size": 8190,
    "max_field_size": 8190,
    "max_headers": 128,
}


async def run_gateway(api: NodeAPI, host: str = "127.0.0.1", port: int = 5000,
                      until: Awaitable[object] | None = None, *,
                      config: GatewayConfig | None = None,
                      ssl_context: ssl.SSLContext | None = None,
                      on_ready: Callable[[int], None] | None = None,
                      shutdown_timeout: float = 10.0,
                      metrics: GatewayMetrics | None = None,
                      guard: Guard | None = None,
                      quotas: Quotas | None = None) -> None:
    """Serve the distribution API over `api` until `until` completes (such as a wait for
    SIGTERM), or forever when it is None, or until the task is cancelled.

    `on_ready` receives the bound port (useful with `port=0`) once connections are
    accepted. In-flight requests get `shutdown_timeout` seconds to finish on the way out.
    """
    app = make_app(api, config, metrics, guard, quotas)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout,
                           **SERVER_SETTINGS)
    try:
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context, backlog=1024)
        await site.start()
        bound = port
        for address in runner.addresses:
            if isinstance(address, tuple):
                bound = int(address[1])
                break
        log.info("gateway listening on %s:%d", host, bound)
        if on_ready is not None:
            on_ready(bound)
        await (until if until is not None else asyncio.Event().wait())
    finally:
        if inspect.iscoroutine(until):
            until.close()  # never awaited when startup failed; harmless once finished
        await runner.cleanup()
