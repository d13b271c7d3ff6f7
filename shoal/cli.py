"""The `shoal` command: one binary for the embedded registry, storage nodes and gateways."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

import uvloop

from shoal.logs import configure as configure_logs
from shoal.memory import pin_allocator

if TYPE_CHECKING:
    from gateway.auth.guard import Guard
    from node.api import NodeAPI
    from node.cluster.config import ClusterConfig
    from node.gc.collector import GcConfig
    from node.rpc.tls import TlsFiles

DEFAULT_DATA = Path("shoal-data")
DEFAULT_LISTEN = "127.0.0.1:5000"
DEFAULT_NODE_LISTEN = "127.0.0.1:7400"


def _host_port(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(value: str) -> float:
    """Seconds from "90", "90s", "15m", "1h" or "2d"."""
    text = value.strip().lower()
    scale = _UNITS.get(text[-1:])
    number = text[:-1] if scale is not None else text
    try:
        seconds = float(number) * (scale or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a duration such as 90s, 15m or 1h, got {value!r}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"a duration cannot be {value!r}")
    return seconds


def _gc_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--gc-interval", type=_duration, default="1h", metavar="DURATION",
                         help="collect garbage this often, e.g. 30m (default: 1h; 0: only "
                              "on demand, with `shoal gc`)")
    command.add_argument("--gc-grace", type=_duration, default="1h", metavar="DURATION",
                         help="how long a blob or chunk must have been unreferenced before "
                              "it is deleted (default: 1h); protects pushes in progress")
    command.add_argument("--gc-compact-below", type=float, default=0.5, metavar="FRACTION",
                         help="rewrite pack files whose live share fell below this "
                              "(default: 0.5)")


def _gc_config(args: argparse.Namespace) -> GcConfig:
    from node.gc.collector import GcConfig

    if not 0 <= args.gc_compact_below <= 1:
        raise SystemExit("shoal: --gc-compact-below is a fraction between 0 and 1")
    return GcConfig(grace_ms=int(args.gc_grace * 1000), compact_below=args.gc_compact_below)


def _byte_size(value: str) -> int:
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = value.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (text[:-1], text[-1]) if text[-1:] in units else (text, "")
    try:
        size = int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size in bytes (e.g. 10G), got {value!r}"
                                         ) from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive size, got {value!r}")
    return size


def _upload_idle(command: argparse.ArgumentParser) -> None:
    command.add_argument("--upload-idle-hours", type=float, default=24.0, metavar="H",
                         help="cancel upload sessions idle for longer than this (default: 24)")


def _auth(command: argparse.ArgumentParser) -> None:
    command.add_argument("--auth", type=Path, metavar="FILE",
                         help="turn on authentication and rights from this TOML file "
                              "(docs/auth.md); default: open to anyone who can connect")
    command.add_argument("--audit-log", type=Path, metavar="FILE",
                         help="append the audit log (JSON lines) to this file "
                              "(default: with the other logs, on stderr)")


def _https_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--tls-cert", type=Path, metavar="PEM",
                         help="serve HTTPS with this certificate chain (default: plain HTTP)")
    command.add_argument("--tls-key", type=Path, metavar="PEM",
                         help="the private key of --tls-cert")


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
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="least severe messages logged (default: INFO)")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one JSON object a line, for log collectors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run a single-node registry: storage and the OCI gateway in one process",
        description="Run the embedded default: one storage node and the OCI gateway in one "
                    "process, data in a local folder. `docker push localhost:5000/name` "
                    "works against it as is.")
    serve.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                       help=f"data folder (default: ./{DEFAULT_DATA})")
    serve.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                       help=f"HTTP address of the registry (default: {DEFAULT_LISTEN})")
    _upload_idle(serve)
    _gc_options(serve)
    _auth(serve)
    _https_options(serve)

    node = commands.add_parser(
        "node", help="run a storage node serving gRPC",
        description="Run a storage node: chunk store, blobs and registry metadata over gRPC.")
    node.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                      help=f"data folder (default: ./{DEFAULT_DATA})")
    node.add_argument("--listen", metavar="HOST:PORT",
                      help=f"gRPC address (default: the member's address in --cluster, else "
                           f"{DEFAULT_NODE_LISTEN}; port 0 picks one)")
    node.add_argument("--cluster", type=Path, metavar="FILE",
                      help="serve as a member of the cluster this file describes "
                           "(README: Running a cluster)")
    node.add_argument("--id", dest="member_id", metavar="ID",
                      help="this member's id in --cluster")
    node.add_argument("--repair-interval", type=float, default=10.0, metavar="S",
                      help="seconds between repair passes (default: 10)")
    node.add_argument("--repair-rate", type=float, default=64.0, metavar="MB/S",
                      help="most MB per second repair sends (default: 64)")
    node.add_argument("--scrub-interval", type=float, default=24 * 3600.0, metavar="S",
                      help="seconds between scrubs, which re-hash every chunk (default: a day)")
    node.add_argument("--scrub-rate", type=float, default=32.0, metavar="MB/S",
                      help="most MB per second scrub reads (default: 32)")
    node.add_argument("--port-file", type=Path, metavar="FILE",
                      help="write the port actually bound to this file once serving")
    node.add_argument("--metrics-listen", type=_host_port, metavar="HOST:PORT",
                      help="serve Prometheus metrics over HTTP here (default: off)")
    node.add_argument("--tls-cert", type=Path, metavar="PEM", help="this node's certificate")
    node.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    node.add_argument("--tls-ca", type=Path, metavar="PEM",
                      help="the cluster CA: with the two above, only clients holding a "
                           "certificate it signed may connect (mutual TLS)")
    node.add_argument("--serve-limit", type=int, default=8, metavar="N",
                      help="chunk streams served to edges at once; past it, edges are "
                           "answered busy with a list of peers to ask (default: 8)")
    _upload_idle(node)
    _gc_options(node)

    gc = commands.add_parser(
        "gc", help="collect garbage on a running registry or node now",
        description="Ask a running `shoal serve` (through the admin socket in its data "
                    "folder) or `shoal node` (over gRPC) to collect garbage now, and show "
                    "what went: blobs nothing referred to for the grace period, the chunks "
                    "they leave unused, and pack files rewritten to give the space back.")
    where = gc.add_mutually_exclusive_group()
    where.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                       help=f"data folder of a running `shoal serve` (default: ./{DEFAULT_DATA})")
    where.add_argument("--node", metavar="HOST:PORT", help="gRPC address of a `shoal node`")
    gc.add_argument("--dry-run", action="store_true",
                    help="only report what would go; change nothing")
    gc.add_argument("--json", action="store_true", help="print the report as JSON")
    gc.add_argument("-v", "--verbose", action="store_true",
                    help="also list the digests of the blobs deleted")
    gc.add_argument("--timeout", type=_duration, default="1h", metavar="DURATION",
                    help="give up waiting after this long (default: 1h)")
    gc.add_argument("--node-cert", type=Path, metavar="PEM",
                    help="a client certificate, for a node that requires mutual TLS")
    gc.add_argument("--node-key", type=Path, metavar="PEM", help="its private key")
    gc.add_argument("--node-ca", type=Path, metavar="PEM", help="the cluster CA")

    gateway = commands.add_parser(
        "gateway", help="run an OCI gateway in front of a storage node",
        description="Run the OCI distribution HTTP gateway, storing through a node over gRPC.")
    store = gateway.add_mutually_exclusive_group(required=True)
    store.add_argument("--node", metavar="HOST:PORT", help="gRPC address of the storage node")
    store.add_argument("--cluster", type=Path, metavar="FILE",
                       help="store in the cluster this file describes")
    gateway.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                         metavar="HOST:PORT",
                         help=f"HTTP address (default: {DEFAULT_LISTEN})")
    gateway.add_argument("--node-cert", type=Path, metavar="PEM",
                         help="this gateway's certificate for mutual TLS with the node")
    gateway.add_argument("--node-key", type=Path, metavar="PEM", help="its private key")
    gateway.add_argument("--node-ca", type=Path, metavar="PEM", help="the cluster CA")
    _auth(gateway)
    _https_options(gateway)

    edge = commands.add_parser(
        "edge", help="run an edge: a local pull-through registry that shares layers with peers",
        description="Run an edge for one host: a registry on --listen for the host's docker, "
                    "whose blobs come from a local chunk cache, from other edges (served on "
                    "--peer-listen) and from the origin only for what no peer has. Metadata "
                    "and pushes go to the origin (--origin), or with --cluster to the "
                    "cluster's members by placement.")
    edge.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                      help=f"folder of the chunk cache, wiped at start (default: ./{DEFAULT_DATA})")
    edge.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN, metavar="HOST:PORT",
                      help=f"HTTP address of the local registry (default: {DEFAULT_LISTEN})")
    edge.add_argument("--peer-listen", required=True, metavar="IP:PORT",
                      help="gRPC address where other edges fetch chunks from this one")
    edge.add_argument("--advertise", metavar="HOST:PORT",
                      help="the address peers are told to use (default: --peer-listen)")
    upstream = edge.add_mutually_exclusive_group(required=True)
    upstream.add_argument("--origin", action="append", metavar="IP:PORT",
                          help="gRPC address of an origin node (repeat for several)")
    upstream.add_argument("--cluster", type=Path, metavar="FILE",
                          help="front the cluster this file describes: its members own "
                               "blobs by placement, and its [tls] covers the edge's calls "
                               "and Peer service")
    edge.add_argument("--no-p2p", action="store_true",
                      help="fetch every chunk from the origin and serve no peer "
                           "(the baseline to compare with)")
    edge.add_argument("--cache-size", type=_byte_size, default=10 << 30, metavar="BYTES",
                      help="chunk cache limit, e.g. 10G; least recently used chunks that no "
                           "pull needs are evicted past it (default: 10G)")

    status = commands.add_parser(
        "status", help="show the members of a cluster: health, disk, chunks, repair",
        description="Ask every member of a cluster (or one node) how it is.")
    where = status.add_mutually_exclusive_group(required=True)
    where.add_argument("--cluster", type=Path, metavar="FILE", help="the cluster file")
    where.add_argument("--node", metavar="HOST:PORT", help="one node's gRPC address")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    cluster = commands.add_parser(
        "cluster", help="run a whole cluster on this machine as plain processes",
        description="Start N storage nodes and a gateway as child processes on loopback, "
                    "with the cluster file in the data folder; Ctrl-C stops them all.")
    cluster.add_argument("--nodes", type=int, default=3, help="members (default: 3)")
    cluster.add_argument("--replicas", type=int, default=2, help="R (default: 2)")
    cluster.add_argument("--write-quorum", type=int, help="W (default: R)")
    cluster.add_argument("--data", type=Path, default=Path("shoal-cluster"), metavar="DIR",
                         help="one folder per member in here (default: ./shoal-cluster)")
    cluster.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                         metavar="HOST:PORT", help=f"the gateway (default: {DEFAULT_LISTEN})")
    cluster.add_argument("--base-port", type=int, default=7401,
                         help="member i listens on 127.0.0.1:BASE+i (default: 7401)")
    cluster.add_argument("--repair-interval", type=float, default=10.0, metavar="S")
    return parser


async def _until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def _serve(args: argparse.Namespace) -> None:
    from gateway.metrics import GatewayMetrics
    from gateway.server import run_gateway
    from node.gc.collector import GarbageCollector
    from node.janitor import collect_garbage_forever, expire_uploads_forever
    from node.local import LocalNode
    from node.metrics import NodeCollector
    from node.rpc.admin import serve_admin_socket

    guard = _guard(args.auth, args.data)
    ssl_context = _https(args.tls_cert, args.tls_key)
    gc_config = _gc_config(args)
    node = await LocalNode.open(args.data)
    gc = GarbageCollector(node, gc_config)
    metrics = GatewayMetrics()
    metrics.registry.register(NodeCollector(node, gc))
    janitors = [asyncio.create_task(
        expire_uploads_forever(node, args.upload_idle_hours * 3600))]
    if args.gc_interval > 0:
        janitors.append(asyncio.create_task(collect_garbage_forever(gc, args.gc_interval)))
    try:
        admin = await serve_admin_socket(gc, args.data)
    except (OSError, RuntimeError) as exc:
        # A data folder whose path is too long for a unix socket must not stop the
        # registry; only `shoal gc --data` is lost, and the schedule still runs.
        logging.getLogger(__name__).warning("no admin socket in %s: %s", args.data, exc)
        admin = None
    try:
        host, port = args.listen
        await run_gateway(node, host, port, _until_signalled(), metrics=metrics,
                          guard=guard, ssl_context=ssl_context)
    finally:
        gc.stop()
        for janitor in janitors:
            janitor.cancel()
        if admin is not None:
            await admin.stop(5.0)
        # A collection runs in a thread that cancelling does not stop: it ends at its
        # next pause, and must have before the index closes under it.
        await asyncio.to_thread(gc.wait_idle)
        await node.close()


async def _node(args: argparse.Namespace) -> None:
    from node.serve import serve_node

    port_file: Path | None = args.port_file

    def ready(port: int) -> None:
        if port_file is not None:
            port_file.write_text(f"{port}\n")

    tls = _mtls(args.tls_cert, args.tls_key, args.tls_ca, "--tls")
    member = None
    listen = args.listen or DEFAULT_NODE_LISTEN
    if args.cluster is not None:
        from node.serve import MemberRole

        if not args.member_id:
            raise SystemExit("shoal: --cluster needs --id, this member's id in the file")
        config = _cluster_config(args.cluster)
        try:
            address = config.member(args.member_id).address
        except ValueError as exc:
            raise SystemExit(f"shoal: {exc}") from None
        listen = args.listen or address
        tls = tls or config.tls
        member = MemberRole(config, args.member_id, args.repair_interval,
                            args.repair_rate * 1e6, args.scrub_interval, args.scrub_rate * 1e6)
    await serve_node(args.data, listen, ready=ready,
                     upload_idle=args.upload_idle_hours * 3600,
                     metrics_listen=args.metrics_listen, tls=tls, member=member,
                     gc_config=_gc_config(args), gc_interval=args.gc_interval,
                     serve_limit=args.serve_limit)


def _cluster_config(path: Path) -> ClusterConfig:
    from node.cluster.config import load

    try:
        return load(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"shoal: cannot use {path}: {exc}") from None


async def _gc(args: argparse.Namespace) -> None:
    from rich.console import Console

    from shoal import gcreport

    tls = _mtls(args.node_cert, args.node_key, args.node_ca, "--node")
    report = await gcreport.run(args.data, args.node, args.dry_run, args.timeout, tls)
    if args.json:
        print(gcreport.as_json(report))
    else:
        gcreport.render(report, Console(), args.verbose)


async def _gateway(args: argparse.Namespace) -> None:
    from gateway.server import run_gateway
    from node.rpc.client import RemoteNode

    guard = _guard(args.auth, args.auth.parent if args.auth else Path.cwd())
    ssl_context = _https(args.tls_cert, args.tls_key)
    store: NodeAPI
    if args.cluster is not None:
        from node.cluster.client import ClusterNode

        store = await ClusterNode.connect(_cluster_config(args.cluster))
    else:
        store = RemoteNode(args.node,
                           tls=_mtls(args.node_cert, args.node_key, args.node_ca, "--node"))
    try:
        host, port = args.listen
        await run_gateway(store, host, port, _until_signalled(), guard=guard,
                          ssl_context=ssl_context)
    finally:
        await store.close()


async def _edge(args: argparse.Namespace) -> None:
    from node.edge import serve_edge

    host = args.peer_listen.rpartition(":")[0].strip("[]")
    if args.advertise is None and host in ("", "0.0.0.0", "::"):
        raise SystemExit("shoal: --peer-listen on every interface needs --advertise IP:PORT")
    cluster = _cluster_config(args.cluster) if args.cluster is not None else None
    await serve_edge(args.data, args.listen, args.peer_listen, args.origin or [],
                     _until_signalled(), advertise=args.advertise, p2p=not args.no_p2p,
                     cache_bytes=args.cache_size, cluster=cluster)


def _https(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise SystemExit("shoal: --tls-cert and --tls-key go together")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SystemExit(f"shoal: cannot use {cert} and {key}: {exc}") from None
    return context


def _mtls(cert: Path | None, key: Path | None, ca: Path | None, flag: str) -> TlsFiles | None:
    from node.rpc.tls import TlsFiles

    given = [p for p in (cert, key, ca) if p is not None]
    if not given:
        return None
    if cert is None or key is None or ca is None:
        raise SystemExit(f"shoal: {flag}-cert, {flag}-key and {flag}-ca go together")
    for path in (cert, key, ca):
        if not path.is_file():
            raise SystemExit(f"shoal: {path} is not a file")
    return TlsFiles(cert, key, ca)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logs(args.log_level, args.log_format)
    pin_allocator()
    if getattr(args, "audit_log", None) is not None:
        from gateway.auth.audit import write_to

        write_to(args.audit_log)
    if args.command == "serve":
        logging.getLogger(__name__).info("registry on %s://%s:%d, data in %s",
                                         "https" if args.tls_cert else "http", *args.listen,
                                         args.data.resolve())
        uvloop.run(_serve(args))
    elif args.command == "node":
        uvloop.run(_node(args))
    elif args.command == "gateway":
        uvloop.run(_gateway(args))
    elif args.command == "edge":
        uvloop.run(_edge(args))
    elif args.command == "status":
        from shoal.status import show

        config = _cluster_config(args.cluster) if args.cluster else None
        code: int = uvloop.run(show(config, args.node, args.json))
        return code
    elif args.command == "cluster":
        from shoal.local_cluster import run

        return run(args.nodes, args.replicas, args.write_quorum, args.data, args.listen,
                   args.base_port, args.repair_interval)
    elif args.command == "gc":
        uvloop.run(_gc(args))
    return 0
