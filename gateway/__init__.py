"""The OCI distribution HTTP API over a node's client API (node.api.NodeAPI)."""

from gateway.app import make_app
from gateway.context import GatewayConfig
from gateway.server import run_gateway

__all__ = ["GatewayConfig", "make_app", "run_gateway"]
