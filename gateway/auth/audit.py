"""The audit log: one JSON line per push, tag change, delete, sign-in and refusal, saying
who, from where, what, on which repository and digest, with what result, and when.

Lines go to the `shoal.audit` logger; `--audit-log FILE` writes them, and only them, to a
file. Credentials never appear: not the password, not the token, not the header.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from gateway.metrics import ROUTE

log = logging.getLogger("shoal.audit")

USER = web.RequestKey("user", str)  # set by the guard once it knows who is asking

# Routes that change what a registry holds; reads are audited only when refused.
CHANGES = {
    "uploads.start": "push-blob", "uploads.finish": "push-blob",
    "manifests.put": "push-manifest", "manifests.delete": "delete-manifest",
    "blobs.delete": "delete-blob",
}


def write_to(path: Path) -> None:
    """Send audit lines to `path` (appended, one JSON object a line) instead of stderr."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def audit_middleware() -> Middleware:
    @web.middleware
    async def audit(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        route = request.get(ROUTE, "")
        status = response.status
        if request.path == "/token":
            action = "sign-in"
        elif route in CHANGES and not (route == "uploads.start" and status == 202):
            action = CHANGES[route]  # (a 202 there only opened a session)
        elif status in (401, 403, 429):
            action = f"read:{route or 'unrouted'}"
        else:
            return response
        record(request, action, status)
        return response

    return audit


def record(request: web.Request, action: str, status: int) -> None:
    path = request.path
    reference = None
    if "/manifests/" in path or "/blobs/" in path:
        reference = path.rpartition("/")[2][:200]
    event = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "who": request.get(USER) or None,
        "from": request.remote,
        "action": action,
        "method": request.method,
        "repository": _repository(path),
        "reference": reference,
        "digest": request.rel_url.query.get("digest") or request.rel_url.query.get("mount"),
        "status": status,
        "result": "ok" if status < 400 else "refused" if status in (401, 403, 429) else "error",
    }
    log.info(json.dumps(event, separators=(",", ":")))


def _repository(path: str) -> str | None:
    for marker in ("/blobs/", "/manifests/", "/tags/", "/referrers/"):
        head, sep, _ = path.partition(marker)
        if sep and head.startswith("/v2/"):
            return head[4:][:300]
    return None
