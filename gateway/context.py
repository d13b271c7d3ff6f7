"""What every handler shares: the storage seam, the settings, the running upload hashes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.hashes import UploadHashes
from gateway.quota import Quotas
from node.api import NodeAPI

log = logging.getLogger(__name__)

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    # The spec asks registries to take manifests of at least 4 MiB; bigger ones get 413.
    max_manifest_size: int = 4 * MiB
    # Longest silence between two pieces of a request body before the request fails.
    body_idle_timeout: float = 60.0
    # Longest a single ~1 MiB write to a slow reader may take.
    write_timeout: float = 120.0
    # Upper bound on `n` for tag and repository listings; larger asks get a Link.
    max_page_size: int = 10_000
    # A catalog request without `n` gets this many names and a Link, as distribution does.
    default_catalog_page: int = 1_000
    # Upload sessions whose running hash is remembered; others are rehashed at the end.
    upload_hash_capacity: int = 4_096


@dataclass(slots=True)
class Gateway:
    api: NodeAPI
    config: GatewayConfig = field(default_factory=GatewayConfig)
    quotas: Quotas = field(default_factory=Quotas)
    hashes: UploadHashes = field(init=False)
    _cleanups: set[asyncio.Task[Any]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.hashes = UploadHashes(self.config.upload_hash_capacity)

    def clean_up_later(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run storage clean-up that must not die with the request that needed it (aiohttp
        cancels a handler whose client hung up)."""
        task = asyncio.get_running_loop().create_task(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleaned_up)

    def _cleaned_up(self, task: asyncio.Task[Any]) -> None:
        self._cleanups.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("clean-up failed: %r", task.exception())

    async def drain(self) -> None:
        await asyncio.gather(*self._cleanups, return_exceptions=True)


GATEWAY = web.AppKey("gateway", Gateway)


def gateway_of(request: web.Request) -> Gateway:
    return request.app[GATEWAY]
