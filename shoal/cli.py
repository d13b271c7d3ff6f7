"""The `shoal` command: one binary for the embedded registry, storage nodes and gateways."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from shoal.memory import pin_allocator

if TYPE_CHECKING:
    from gateway.auth.guard import Guard

DEFAULT_DATA = Path("shoal-data")
DEFAULT_LISTEN = "127.0.0.1:5000"
DEFAULT_NODE_LISTEN = "127.0.0.1:7400"


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _upload_idle(command: argparse.ArgumentParser) -> None:
    command.add_argument("--upload-idle-hours", type=float, default=24.0, metavar="H",
                         help="cancel upload sessions idle for longer than this (default: 24)")


def _auth(command: argparse.ArgumentParser) -> None:
    command.add_argument("--auth", type=Path, metavar="FILE",
                         help="turn on authentication and rights from this TOML file "
                              "(docs/auth.md); default: open to anyone who can connect")


def _guard(auth: Path | None, data: Path) -> Guard | None:
    if auth is None:
        return None
    from gateway.auth.config import load
    from gateway.auth.guard import Guard

    try:
        return Guard(load(auth, data))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"shoal: cannot use {auth}: {exc}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal",
        description="Shoal: a deduplicating, distributed container registry.",
    )
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run a single-node registry: storage and the OCI gateway in one process",
        description="Run the embedded default: one storage node and the OCI gateway in one "
                    "process, data in a local folder. `docker push localhost:5000/name` "
                    "works against it as is.")
    serve.add_argument("--data", type=Path, default=DEFAULT_DATA,
                       help=f"data folder (default: ./{DEFAULT_DATA})")
    serve.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                       help=f"HTTP address of the registry (default: {DEFAULT_LISTEN})")
    _upload_idle(serve)
    _auth(serve)

    node = commands.add_parser(
        "node", help="run a storage node serving gRPC",
        description="Run a storage node: chunk store, blobs and registry metadata over gRPC.")
    node.add_argument("--data", type=Path, default=DEFAULT_DATA,
                      help=f"data folder (default: ./{DEFAULT_DATA})")
    node.add_argument("--listen", default=DEFAULT_NODE_LISTEN,
                      help=f"gRPC address (default: {DEFAULT_NODE_LISTEN}; port 0 picks one)")
    node.add_argument("--port-file", type=Path,
                      help="write the port actually bound to this file once serving")
    node.add_argument("--metrics-listen", type=_host_port, metavar="HOST:PORT",
                      help="serve Prometheus metrics over HTTP here (default: off)")
    _upload_idle(node)

    gateway = commands.add_parser(
        "gateway", help="run an OCI gateway in front of a storage node",
        description="Run the OCI distribution HTTP gateway, storing through a node over gRPC.")
    gateway.add_argument("--node", required=True, help="gRPC address of the storage node")
    gateway.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                         help=f"HTTP address (default: {DEFAULT_LISTEN})")
    _auth(gateway)
    return parser


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(data: Path, listen: tuple[str, int], upload_idle: float,
                 guard: Guard | None) -> None:
    from gateway.metrics import GatewayMetrics
    from gateway.server import run_gateway
    from node.janitor import expire_uploads_forever
    from node.local import LocalNode
    from node.metrics import NodeCollector

    node = await LocalNode.open(data)
    metrics = GatewayMetrics()
    metrics.registry.register(NodeCollector(node))
    janitor = asyncio.create_task(expire_uploads_forever(node, upload_idle))
    try:
        await run_gateway(node, listen[0], listen[1], _until_signalled(), metrics=metrics,
                          guard=guard)
    finally:
        janitor.cancel()
        await node.close()


async def _node(data: Path, listen: str, port_file: Path | None, upload_idle: float,
                metrics_listen: tuple[str, int] | None) -> None:
    from node.rpc.server import serve_node

    def ready(port: int) -> None:
        if port_file is not None:
            port_file.write_text(f"{port}\n")

    await serve_node(data, listen, ready=ready, upload_idle=upload_idle,
                     metrics_listen=metrics_listen)


async def _gateway(target: str, listen: tuple[str, int], guard: Guard | None) -> None:
    from gateway.server import run_gateway
    from node.rpc.client import RemoteNode

    remote = RemoteNode(target)
    try:
        await run_gateway(remote, listen[0], listen[1], _until_signalled(), guard=guard)
    finally:
        await remote.close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pin_allocator()
    if args.command == "serve":
        logging.getLogger(__name__).info("registry on http://%s:%d, data in %s",
                                         *args.listen, args.data.resolve())
        guard = _guard(args.auth, args.data)
        uvloop.run(_serve(args.data, args.listen, args.upload_idle_hours * 3600, guard))
    elif args.command == "node":
        uvloop.run(_node(args.data, args.listen, args.port_file, args.upload_idle_hours * 3600,
                         args.metrics_listen))
    elif args.command == "gateway":
        guard = _guard(args.auth, args.auth.parent if args.auth else Path.cwd())
        uvloop.run(_gateway(args.node, args.listen, guard))
    return 0
