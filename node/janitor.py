"""Background upkeep a node runs while it serves: expiring abandoned uploads, collecting
garbage and applying retention policies on a schedule."""

from __future__ import annotations

import asyncio
import logging

from node.api import NodeAPI
from node.clock import Clock, wall_ms
from node.gc.collector import GarbageCollector
from node.gc.pacing import Stopped
from node.local import LocalNode
from node.retention.policy import RetentionPolicy
from node.retention.run import run_retention

log = logging.getLogger(__name__)

# distribution purges uploads after a week; a day of idleness is ample for any live push
# (every append refreshes a session) and returns the space sooner.
UPLOAD_IDLE_SECONDS = 24 * 3600.0
SWEEP_SECONDS = 600.0


async def expire_uploads_forever(node: LocalNode, idle_seconds: float = UPLOAD_IDLE_SECONDS,
                                 every: float = SWEEP_SECONDS) -> None:
    """Cancel upload sessions idle for longer than `idle_seconds`, every `every` seconds,
    until cancelled. A failed sweep is logged and retried at the next one."""
    while True:
        try:
            expired = await asyncio.to_thread(node.uploads.expire, int(idle_seconds * 1000))
            if expired:
                log.info("expired %d abandoned upload sessions", len(expired))
        except Exception:
            log.exception("upload expiry sweep failed")
        await asyncio.sleep(every)


async def collect_garbage_forever(gc: GarbageCollector, every: float) -> None:
    """Run a garbage collection every `every` seconds (the first one an interval after
    start, so a restart is not slowed), until cancelled. A failed run is logged and the
    next one tried on time."""
    while True:
        await asyncio.sleep(every)
        try:
            await gc.collect()
        except Stopped:
            return
        except Exception:
            log.exception("garbage collection failed")


async def apply_retention_forever(api: NodeAPI, policies: list[RetentionPolicy], every: float,
                                  clock: Clock = wall_ms) -> None:
    """Apply retention policies every `every` seconds (the first run an interval after
    start), until cancelled; garbage collection then reclaims what they let go."""
    while True:
        await asyncio.sleep(every)
        try:
            report = await run_retention(api, policies, clock())
            if report.actions or report.skipped:
                log.info("retention deleted %d tags and manifests (%d skipped: changed "
                         "since planned)", len(report.actions), len(report.skipped))
        except Exception:
            log.exception("retention run failed")
