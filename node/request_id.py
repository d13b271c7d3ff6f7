"""The id of the request being served, carried from the gateway to the nodes it calls
(gRPC metadata `x-request-id`) so their logs can be joined."""

from __future__ import annotations

import contextvars
import re
import uuid

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
METADATA_KEY = "x-request-id"
_SANE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def accept(offered: str | None) -> str:
    """`offered` when it is a sane id (a caller's own, to join its logs with ours), else a
    fresh one: a request id ends up in logs, so nothing odd is let through."""
    if offered and _SANE.fullmatch(offered):
        return offered
    return uuid.uuid4().hex[:16]
