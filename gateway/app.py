"""The aiohttp application: the route table of the distribution API over one NodeAPI."""

from __future__ import annotations

from aiohttp import web

from gateway import base, blobs, manifests, referrers, tags, uploads
from gateway.auth.audit import audit_middleware
from gateway.auth.guard import Guard
from gateway.context import GATEWAY, Gateway, GatewayConfig
from gateway.metrics import METRICS, GatewayMetrics, metrics_middleware, serve_metrics
from gateway.middleware import add_api_version, error_middleware, request_id_middleware
from gateway.quota import Quotas
from gateway.routing import Router, endpoint
from node.api import NodeAPI

_REFERENCE = r"(?P<reference>[^/]+)"
_DIGEST = r"(?P<digest>[^/]+)"
_UPLOAD = r"(?P<upload>[^/]+)"


def make_router(guard: Guard | None = None) -> Router:
    return Router([
        endpoint("/?", {"GET": base.version_check}, named=False),
        endpoint("/_catalog", {"GET": base.catalog}, named=False),
        endpoint("/tags/list", {"GET": tags.list_tags}),
        endpoint(f"/manifests/{_REFERENCE}",
                 {"GET": manifests.get, "PUT": manifests.put, "DELETE": manifests.delete}),
        # Uploads before blobs: `/blobs/uploads` would otherwise read as a blob digest.
        endpoint("/blobs/uploads/?", {"POST": uploads.start}),
        endpoint(f"/blobs/uploads/{_UPLOAD}",
                 {"GET": uploads.status, "PATCH": uploads.patch, "PUT": uploads.finish,
                  "DELETE": uploads.cancel}),
        endpoint(f"/blobs/{_DIGEST}", {"GET": blobs.get, "DELETE": blobs.delete}),
        endpoint(f"/referrers/{_DIGEST}", {"GET": referrers.list_referrers}),
    ], guard=guard.authorize if guard is not None else None)


def make_app(api: NodeAPI, config: GatewayConfig | None = None,
             metrics: GatewayMetrics | None = None, guard: Guard | None = None,
             quotas: Quotas | None = None) -> web.Application:
    """The gateway over `api`. The caller owns `api` and closes it after the app stops.
    `metrics` lets the caller add collectors (an in-process node's) to /metrics; `guard`
    turns on authentication and rights (gateway/auth); `quotas` limits repositories' sizes
    (gateway/quota.py)."""
    metrics = metrics if metrics is not None else GatewayMetrics()
    app = web.Application(middlewares=[request_id_middleware, metrics_middleware(metrics),
                                       audit_middleware(), error_middleware])
    app[METRICS] = metrics
    gateway = Gateway(api, config or GatewayConfig(), quotas or Quotas())
    app[GATEWAY] = gateway

    async def finish_clean_ups(app: web.Application) -> None:
        await gateway.drain()

    app.on_cleanup.append(finish_clean_ups)
    router = make_router(guard)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        return await router(request)

    app.router.add_get("/metrics", serve_metrics)
    if guard is not None:
        app.router.add_route("GET", "/token", guard.token)
        app.router.add_route("POST", "/token", guard.token)
    app.router.add_route("*", "/{path:.*}", dispatch)
    app.on_response_prepare.append(add_api_version)
    return app
