"""Prometheus metrics of the gateway, served at /metrics: requests and their latency by
route, method and status, and the bytes that crossed the HTTP boundary.

Each application has its own CollectorRegistry (tests start many apps in one process);
a node running in the same process adds its collector to it (`shoal serve`).
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                   10.0, 30.0, 60.0, 300.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "shoal_http_requests", "HTTP requests answered, by route, method and status",
            ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram(
            "shoal_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by route, method and "
            "status", ["route", "method", "status"], buckets=LATENCY_BUCKETS,
            registry=self.registry)
        self.received = Counter(
            "shoal_http_received_bytes", "Upload body bytes read (blobs and manifests)",
            registry=self.registry)
        self.sent = Counter(
            "shoal_http_sent_bytes", "Response body bytes written", registry=self.registry)


METRICS = web.AppKey("metrics", GatewayMetrics)
ROUTE = web.RequestKey("route", str)  # the handler that served a request, set by the router


def metrics_middleware(metrics: GatewayMetrics) -> Middleware:
    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            route = request.get(ROUTE, "none")
            labels = (route, request.method, str(status))
            metrics.requests.labels(*labels).inc()
            metrics.latency.labels(*labels).observe(time.perf_counter() - start)
            if response is not None:
                metrics.sent.inc(response.body_length)

    return measure


async def serve_metrics(request: web.Request) -> web.Response:
    registry = request.app[METRICS].registry
    # Collectors may look at the node's index and folders: not on the event loop.
    body = await asyncio.to_thread(generate_latest, registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
