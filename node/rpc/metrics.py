"""gRPC calls a node answered, by method and status code, and how long they took.

The counters are process-wide, since the services' decorators count into them, and belong
to no registry by themselves: a node process that serves metrics adds `RpcCollector` to
its own, so the default global registry stays empty.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import Counter, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

CALLS = Counter("shoal_grpc_requests", "gRPC calls answered, by method and status code",
                ["method", "code"], registry=None)
LATENCY = Histogram("shoal_grpc_request_duration_seconds",
                    "Time from a call's arrival to its last message, by method and code",
                    ["method", "code"], buckets=LATENCY_BUCKETS, registry=None)


def observe(method: str, code: str, seconds: float) -> None:
    CALLS.labels(method, code).inc()
    LATENCY.labels(method, code).observe(seconds)


class RpcCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from CALLS.collect()
        yield from LATENCY.collect()
