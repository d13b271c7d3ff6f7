"""Background upkeep a node runs while it serves: for now, expiring abandoned uploads."""

from __future__ import annotations

import asyncio
import logging

from node.local import LocalNode

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
