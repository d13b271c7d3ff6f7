"""The `shoal` command: one binary for the embedded registry, storage nodes and gateways."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import ssl
import sys
import textwrap
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvloop

from shoal import config as settings
from shoal.logs import configure as configure_logs
from shoal.memory import pin_allocator

if TYPE_CHECKING:
    from gateway.auth.guard import Guard
    from gateway.quota import Quotas
    from node.api import NodeAPI
    from node.cluster.config import ClusterConfig
    from node.gc.collector import GcConfig
    from node.retention.policy import RetentionPolicy
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


def _gc_options(command: argparse._ActionsContainer) -> None:
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


def _quota_option(command: argparse._ActionsContainer) -> None:
    command.add_argument("--quota", type=Path, metavar="FILE",
                         help="refuse pushes that would take a repository past its quota "
                              "(TOML; README: Quotas); default: no quotas")


def _quotas(path: Path | None) -> Quotas | None:
    if path is None:
        return None
    from gateway.quota import load

    try:
        return load(path)
    except ValueError as exc:
        raise SystemExit(f"shoal: {exc}") from None


def _upload_idle(command: argparse._ActionsContainer) -> None:
    command.add_argument("--upload-idle-hours", type=float, default=24.0, metavar="H",
                         help="cancel upload sessions idle for longer than this (default: 24)")


def _buffered_packs(command: argparse._ActionsContainer) -> None:
    command.add_argument("--buffered-packs", action="store_true",
                         help="write chunk bytes through the page cache: the first pull of "
                              "a pushed blob then reads it from memory, at the cost of "
                              "ingest CPU and of evicting what pulls read (default: "
                              "O_DIRECT where the file system has it; node/packwriter.py)")


def _auth(command: argparse._ActionsContainer) -> None:
    command.add_argument("--auth", type=Path, metavar="FILE",
                         help="turn on authentication and rights from this TOML file "
                              "(docs/auth.md); default: open to anyone who can connect")
    command.add_argument("--audit-log", type=Path, metavar="FILE",
                         help="append the audit log (JSON lines) to this file "
                              "(default: with the other logs, on stderr)")


def _https_options(command: argparse._ActionsContainer) -> None:
    command.add_argument("--tls-cert", type=Path, metavar="PEM",
                         help="serve HTTPS with this certificate chain (default: plain HTTP)")
    command.add_argument("--tls-key", type=Path, metavar="PEM",
                         help="the private key of --tls-cert")


def _node_tls_options(group: argparse._ActionsContainer, whose: str = "a client") -> None:
    """--node-cert/--node-key/--node-ca: mutual TLS with a node or cluster member."""
    group.add_argument("--node-cert", type=Path, metavar="PEM",
                       help=f"{whose} certificate for mutual TLS with the node")
    group.add_argument("--node-key", type=Path, metavar="PEM", help="its private key")
    group.add_argument("--node-ca", type=Path, metavar="PEM", help="the cluster CA")


def _guard(auth: Path | None, data: Path) -> Guard | None:
    if auth is None:
        return None
    from gateway.auth.config import load
    from gateway.auth.guard import Guard

    try:
        return Guard(load(auth, data))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"shoal: cannot use {auth}: {exc}") from None


class _Help(argparse.HelpFormatter):
    """Descriptions wrapped by paragraph, examples kept line for line, and every option's
    default shown unless its help already says it."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("example"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return "\n\n".join(textwrap.fill(" ".join(p.split()), width, initial_indent=indent,
                                          subsequent_indent=indent)
                            for p in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or not action.option_strings
                or action.default in (None, False, argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def _command(commands: Any, name: str, summary: str, description: str,
             example: str = "") -> argparse.ArgumentParser:
    command: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=description, formatter_class=_Help,
        epilog=f"example:\n{example}" if example else None)
    command.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                         help="read settings from this TOML file (default: $SHOAL_CONFIG, "
                              "else ./shoal.toml if present); `shoal config show` explains")
    return command


def _registry_client(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("registry access")
    group.add_argument("--user", metavar="NAME",
                       help="user name for the registry (Basic or docker token auth)")
    group.add_argument("--password", metavar="SECRET",
                       help="its password; prefer $SHOAL_PASSWORD, which `ps` does not show")
    group.add_argument("--insecure", action="store_true",
                       help="plain HTTP, or HTTPS without checking the certificate "
                            "(loopback hosts use HTTP anyway)")
    group.add_argument("--jobs", type=int, default=3, metavar="N",
                       help="blobs moved at once")
    output = command.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print the summary as JSON (progress still goes to stderr)")
    output.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shoal", formatter_class=_Help,
        description="Shoal: a deduplicating, distributed container registry.\n\n"
                    "Run a registry (serve), its parts (node, gateway), a local cluster "
                    "(cluster),\nlook after it (status, gc), and move images (push, pull).",
        epilog="examples:\n"
               "  shoal serve --data ./shoal-data --listen 127.0.0.1:5000\n"
               "  shoal push ./layout localhost:5000/app:v1\n"
               "  shoal pull localhost:5000/app:v1 ./out\n"
               "  shoal config show serve      # effective settings, and where each came from\n"
               "\nsettings: flags > $SHOAL_<OPTION> > the [command] table of --config FILE "
               "(or ./shoal.toml)\n`shoal COMMAND --help` lists a command's options.")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="least severe messages logged")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one JSON object a line, for log collectors")
    parser.add_argument("--config", metavar="FILE",
                        help="read settings from this TOML file (default: $SHOAL_CONFIG, "
                             "else ./shoal.toml if present)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     title="commands")

    serve = _command(
        commands, "serve",
        "run a single-node registry: storage and the OCI gateway in one process",
        "Run the embedded default: one storage node and the OCI gateway in one process, "
        "data in a\nlocal folder. `docker push localhost:5000/name` works against it as is.",
        "  shoal serve --data /var/lib/shoal --listen 0.0.0.0:5000 --gc-interval 30m\n"
        "  SHOAL_LISTEN=0.0.0.0:5000 shoal serve      # the same option from the environment")
    storage = serve.add_argument_group("storage")
    storage.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                         help="data folder")
    _upload_idle(storage)
    _buffered_packs(storage)
    network = serve.add_argument_group("network")
    network.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                         metavar="HOST:PORT",
                         help=f"HTTP address of the registry (default: {DEFAULT_LISTEN})")
    _https_options(network)
    access = serve.add_argument_group("access")
    _auth(access)
    _quota_option(access)
    _gc_options(serve.add_argument_group("garbage collection"))
    kept = serve.add_argument_group("retention")
    kept.add_argument("--retention", type=Path, metavar="FILE",
                      help="apply these retention policies (TOML; README: Retention) on a "
                           "schedule (default: never; `shoal retention` on demand)")
    kept.add_argument("--retention-interval", type=_duration, default="1h",
                      metavar="DURATION", help="how often (default: 1h)")

    node = _command(
        commands, "node", "run a storage node serving gRPC",
        "Run a storage node: chunk store, blobs and registry metadata over gRPC, alone (in "
        "front of\n`shoal gateway --node`) or as a member of a cluster.",
        "  shoal node --data ./node-data --listen 127.0.0.1:7400 "
        "--metrics-listen 127.0.0.1:9400\n"
        "  shoal node --cluster cluster.toml --id node1 --data /var/lib/shoal")
    storage = node.add_argument_group("storage")
    storage.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                         help="data folder")
    _upload_idle(storage)
    _buffered_packs(storage)
    network = node.add_argument_group("network")
    network.add_argument("--listen", metavar="HOST:PORT",
                         help=f"gRPC address (default: the member's address in --cluster, "
                              f"else {DEFAULT_NODE_LISTEN}; port 0 picks one)")
    network.add_argument("--port-file", type=Path, metavar="FILE",
                         help="write the port actually bound to this file once serving")
    network.add_argument("--metrics-listen", type=_host_port, metavar="HOST:PORT",
                         help="serve Prometheus metrics over HTTP here (default: off)")
    network.add_argument("--tls-cert", type=Path, metavar="PEM",
                         help="this node's certificate")
    network.add_argument("--tls-key", type=Path, metavar="PEM", help="its private key")
    network.add_argument("--tls-ca", type=Path, metavar="PEM",
                         help="the cluster CA: with the two above, only clients holding a "
                              "certificate it signed may connect (mutual TLS)")
    network.add_argument("--serve-limit", type=int, default=8, metavar="N",
                         help="chunk streams served to edges at once; past it, edges are "
                              "answered busy with a list of peers to ask (default: 8)")
    member = node.add_argument_group("cluster membership")
    member.add_argument("--cluster", type=Path, metavar="FILE",
                        help="serve as a member of the cluster this file describes "
                             "(README: Running a cluster)")
    member.add_argument("--id", dest="member_id", metavar="ID",
                        help="this member's id in --cluster")
    member.add_argument("--repair-interval", type=float, default=10.0, metavar="S",
                        help="seconds between repair passes")
    member.add_argument("--repair-rate", type=float, default=64.0, metavar="MB/S",
                        help="most MB per second repair sends")
    member.add_argument("--scrub-interval", type=float, default=24 * 3600.0, metavar="S",
                        help="seconds between scrubs, which re-hash every chunk")
    member.add_argument("--scrub-rate", type=float, default=32.0, metavar="MB/S",
                        help="most MB per second scrub reads")
    _gc_options(node.add_argument_group("garbage collection (alone, not as a member)"))

    gateway = _command(
        commands, "gateway", "run an OCI gateway in front of a storage node or a cluster",
        "Run the OCI distribution HTTP gateway, storing through one node or a whole cluster "
        "over gRPC.\nGateways keep no state: run as many as you like.",
        "  shoal gateway --node 127.0.0.1:7400 --listen 127.0.0.1:5000\n"
        "  shoal gateway --cluster cluster.toml --listen 0.0.0.0:5000")
    backend = gateway.add_argument_group("storage (one of)")
    store = backend.add_mutually_exclusive_group(required=True)
    store.add_argument("--node", metavar="HOST:PORT", help="gRPC address of the storage node")
    store.add_argument("--cluster", type=Path, metavar="FILE",
                       help="store in the cluster this file describes")
    _node_tls_options(backend, "this gateway's")
    network = gateway.add_argument_group("network")
    network.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                         metavar="HOST:PORT", help=f"HTTP address (default: {DEFAULT_LISTEN})")
    _https_options(network)
    access = gateway.add_argument_group("access")
    _auth(access)
    _quota_option(access)

    edge = _command(
        commands, "edge", "run an edge: a local pull-through registry that shares layers "
        "with peers",
        "Run an edge for one host: a registry on --listen for the host's docker, whose blobs "
        "come from\na local chunk cache, from other edges (served on --peer-listen) and from "
        "the origin only for\nwhat no peer has. Metadata and pushes go to the origin "
        "(--origin), or with --cluster to the\ncluster's members by placement.",
        "  shoal edge --origin 10.0.0.1:7400 --peer-listen 10.0.0.7:7401 --cache-size 20G\n"
        "  shoal edge --cluster cluster.toml --peer-listen 10.0.0.7:7401")
    cache = edge.add_argument_group("cache")
    cache.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                       help="folder of the chunk cache (kept across restarts)")
    cache.add_argument("--cache-size", type=_byte_size, default=10 << 30, metavar="BYTES",
                       help="chunk cache limit, e.g. 10G; least recently used chunks that no "
                            "pull needs are evicted past it (default: 10G)")
    network = edge.add_argument_group("network")
    network.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                         metavar="HOST:PORT", help="HTTP address of the local registry")
    network.add_argument("--peer-listen", required=True, metavar="IP:PORT",
                         help="gRPC address where other edges fetch chunks from this one")
    network.add_argument("--advertise", metavar="HOST:PORT",
                         help="the address peers are told to use (default: --peer-listen)")
    network.add_argument("--serve-limit", type=int, default=64, metavar="N",
                         help="chunk streams served to other edges at once (default: 64)")
    network.add_argument("--upload-limit", type=_byte_size, default=None, metavar="BYTES",
                         help="bytes a second served to other edges at most, e.g. 10M "
                              "(84 Mbit/s); keeps uplink room for the host's own traffic "
                              "(default: no limit)")
    network.add_argument("--no-p2p", action="store_true",
                         help="fetch every chunk from the origin and serve no peer "
                              "(the baseline to compare with)")
    upstream = edge.add_argument_group("upstream (one of)").add_mutually_exclusive_group(
        required=True)
    upstream.add_argument("--origin", action="append", metavar="IP:PORT",
                          help="gRPC address of an origin node (repeat for several)")
    upstream.add_argument("--cluster", type=Path, metavar="FILE",
                          help="front the cluster this file describes: its members own "
                               "blobs by placement, and its [tls] covers the edge's calls "
                               "and Peer service")
    _node_tls_options(edge.add_argument_group(
        "mutual TLS with --origin nodes and other edges (with --cluster: its [tls])"),
        "this edge's")

    push = _command(
        commands, "push", "push a local image (OCI layout or tarball) to any registry",
        "Push an image from an OCI image layout folder (DIR or DIR:NAME, as `skopeo` writes "
        "with oci:DIR:NAME),\nan OCI archive (.tar) or `docker save` output, to any OCI "
        "registry. Blobs the registry already\nhas are not sent (a HEAD first; a "
        "cross-repository mount when the image was pulled from the\nsame registry, or with "
        "--mount-from).",
        "  shoal push ./layout localhost:5000/app:v1\n"
        "  SHOAL_PASSWORD=... shoal push ./saved.tar:app registry.example.com/app:v1 --user me")
    push.add_argument("source", metavar="SOURCE",
                      help="layout folder or tarball, with :NAME when it holds several images")
    push.add_argument("reference", metavar="HOST[:PORT]/REPOSITORY[:TAG]",
                      help="where to push it (TAG: latest when left out)")
    push.add_argument("--mount-from", metavar="REPOSITORY",
                      help="a repository of the same registry that may hold the blobs")
    _registry_client(push)

    pull = _command(
        commands, "pull", "pull an image from any registry into an OCI layout or tarball",
        "Pull an image (every platform of a multi-platform index) into an OCI image layout "
        "folder,\nor an OCI archive when DEST ends in .tar. Every blob's digest and size are "
        "checked before\nit is kept; blobs the layout already has are not downloaded again.",
        "  shoal pull localhost:5000/app:v1 ./out\n"
        "  shoal pull localhost:5000/app@sha256:... ./app.tar")
    pull.add_argument("reference", metavar="HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]",
                      help="the image")
    pull.add_argument("destination", type=Path, metavar="DEST",
                      help="layout folder (created or added to), or FILE.tar")
    pull.add_argument("--name", metavar="NAME",
                      help="its name in the layout's index.json (default: the tag)")
    _registry_client(pull)

    status = _command(
        commands, "status", "show the members of a cluster: health, disk, chunks, repair",
        "Ask every member of a cluster (or one node) how it is. Exits 0 once every member is "
        "up and\nnothing is under-replicated, 1 otherwise: scripts can wait on it.",
        "  shoal status --cluster ./shoal-cluster/cluster.toml")
    where = status.add_argument_group("which (one of)").add_mutually_exclusive_group(
        required=True)
    where.add_argument("--cluster", type=Path, metavar="FILE", help="the cluster file")
    where.add_argument("--node", metavar="HOST:PORT", help="one node's gRPC address")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    gc = _command(
        commands, "gc", "collect garbage on a running registry or node now",
        "Ask a running `shoal serve` (through the admin socket in its data folder) or `shoal "
        "node`\n(over gRPC) to collect garbage now, and show what went: blobs nothing "
        "referred to for the\ngrace period, the chunks they leave unused, and pack files "
        "rewritten to give the space back.",
        "  shoal gc --data ./shoal-data --dry-run\n"
        "  shoal gc --node 127.0.0.1:7400 --json")
    target = gc.add_argument_group("which (one of)")
    where = target.add_mutually_exclusive_group()
    where.add_argument("--data", type=Path, default=DEFAULT_DATA, metavar="DIR",
                       help=f"data folder of a running `shoal serve` (default: ./{DEFAULT_DATA})")
    where.add_argument("--node", metavar="HOST:PORT", help="gRPC address of a `shoal node`")
    where.add_argument("--cluster", type=Path, metavar="FILE",
                       help="collect every member of the cluster this file describes "
                            "(mark and sweep across members; every member must answer)")
    run = gc.add_argument_group("the run")
    run.add_argument("--dry-run", action="store_true",
                     help="only report what would go; change nothing")
    run.add_argument("--timeout", type=_duration, default="1h", metavar="DURATION",
                     help="give up waiting after this long (default: 1h)")
    output = gc.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print the report as JSON")
    output.add_argument("-v", "--verbose", action="store_true",
                        help="also list the digests of the blobs deleted")
    _node_tls_options(gc.add_argument_group("mutual TLS with a node"))

    retention = _command(
        commands, "retention", "delete the tags and manifests retention policies let go",
        "Apply retention policies (README: Retention) to a registry: delete the tags and "
        "untagged\nmanifests they let go, never one a kept manifest needs, and show what went. "
        "Garbage\ncollection then reclaims the space.",
        "  shoal retention --policy retention.toml --data ./shoal-data --dry-run\n"
        "  shoal retention --policy retention.toml --cluster cluster.toml")
    retention.add_argument("--policy", type=Path, required=True, metavar="FILE",
                           help="the policies (TOML)")
    where = retention.add_argument_group("which (one of)").add_mutually_exclusive_group(
        required=True)
    where.add_argument("--data", type=Path, metavar="DIR",
                       help="data folder of a `shoal serve` (running or not)")
    where.add_argument("--node", metavar="HOST:PORT", help="gRPC address of a `shoal node`")
    where.add_argument("--cluster", type=Path, metavar="FILE", help="a cluster file")
    retention.add_argument("--dry-run", action="store_true",
                           help="only report what would go; change nothing")
    retention.add_argument("--json", action="store_true", help="print the report as JSON")
    _node_tls_options(retention.add_argument_group("mutual TLS with a node"))

    cluster = _command(
        commands, "cluster", "run a whole cluster on this machine as plain processes",
        "Start N storage nodes and a gateway as child processes on loopback, with the "
        "cluster file\nin the data folder; Ctrl-C stops them all.",
        "  shoal cluster --nodes 3 --replicas 2 --data ./shoal-cluster\n"
        "  shoal status --cluster ./shoal-cluster/cluster.toml    # from another shell")
    shape = cluster.add_argument_group("shape")
    shape.add_argument("--nodes", type=int, default=3, metavar="N", help="members")
    shape.add_argument("--replicas", type=int, default=2, metavar="R",
                       help="copies of everything")
    shape.add_argument("--write-quorum", type=int, metavar="W",
                       help="copies fsynced before a write is acknowledged (default: R)")
    shape.add_argument("--repair-interval", type=float, default=10.0, metavar="S",
                       help="seconds between repair passes")
    place = cluster.add_argument_group("where")
    place.add_argument("--data", type=Path, default=Path("shoal-cluster"), metavar="DIR",
                       help="one folder per member in here (default: ./shoal-cluster)")
    place.add_argument("--listen", type=_host_port, default=DEFAULT_LISTEN,
                       metavar="HOST:PORT", help=f"the gateway (default: {DEFAULT_LISTEN})")
    place.add_argument("--base-port", type=int, default=7401, metavar="P",
                       help="member i listens on 127.0.0.1:P+i")

    settings = _command(
        commands, "config", "show a command's effective settings and where each came from",
        "Show the settings a command would run with, after the config file, the environment "
        "and the\nflags given (each overrides the one before), and where each came from.",
        "  shoal config show serve\n"
        "  SHOAL_LISTEN=0.0.0.0:6000 shoal --config shoal.toml config show serve --data /srv")
    settings.add_argument("action", choices=["show"], help="show (the only action)")
    settings.add_argument("rest", nargs=argparse.REMAINDER, metavar="COMMAND [OPTIONS]",
                          help="the command (default: serve) and its flags, as you would "
                               "give them")
    settings.add_argument("--json", action="store_true", help="print JSON")
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
    from node.janitor import (
        apply_retention_forever,
        collect_garbage_forever,
        expire_uploads_forever,
    )
    from node.local import LocalNode
    from node.metrics import NodeCollector
    from node.rpc.admin import serve_admin_socket
    from node.rpc.server import add_registry

    guard = _guard(args.auth, args.data)
    quotas = _quotas(args.quota)
    policies = _retention_policies(args.retention) if args.retention else None
    if policies is not None and args.retention_interval <= 0:
        raise SystemExit("shoal: --retention-interval must be more than 0")
    ssl_context = _https(args.tls_cert, args.tls_key)
    gc_config = _gc_config(args)
    node = await LocalNode.open(args.data, direct_writes=not args.buffered_packs)
    gc = GarbageCollector(node, gc_config)
    metrics = GatewayMetrics()
    metrics.registry.register(NodeCollector(node, gc))
    janitors = [asyncio.create_task(
        expire_uploads_forever(node, args.upload_idle_hours * 3600))]
    if args.gc_interval > 0:
        janitors.append(asyncio.create_task(collect_garbage_forever(gc, args.gc_interval)))
    if policies is not None:
        janitors.append(asyncio.create_task(
            apply_retention_forever(node, policies, args.retention_interval)))
    try:
        admin = await serve_admin_socket(gc, args.data,
                                         [lambda server: add_registry(server, node)])
    except (OSError, RuntimeError) as exc:
        # A data folder whose path is too long for a unix socket must not stop the
        # registry; only `shoal gc --data` is lost, and the schedule still runs.
        logging.getLogger(__name__).warning("no admin socket in %s: %s", args.data, exc)
        admin = None
    try:
        host, port = args.listen
        await run_gateway(node, host, port, _until_signalled(), metrics=metrics,
                          guard=guard, ssl_context=ssl_context, quotas=quotas)
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
                     serve_limit=args.serve_limit,
                     direct_writes=not args.buffered_packs)


def _cluster_config(path: Path) -> ClusterConfig:
    from node.cluster.config import load

    try:
        return load(path)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"shoal: cannot use {path}: {exc}") from None


async def _gc(args: argparse.Namespace) -> None:
    from rich.console import Console

    from shoal import gcreport

    if args.cluster is not None:
        config = _cluster_config(args.cluster)
        cluster_report = await gcreport.run_cluster(config, args.dry_run, args.timeout)
        if args.json:
            print(gcreport.cluster_json(cluster_report))
        else:
            gcreport.render_cluster(cluster_report, Console())
        return
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
    quotas = _quotas(args.quota)
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
                          ssl_context=ssl_context, quotas=quotas)
    finally:
        await store.close()


async def _edge(args: argparse.Namespace) -> None:
    from node.edge import serve_edge

    host = args.peer_listen.rpartition(":")[0].strip("[]")
    if args.advertise is None and host in ("", "0.0.0.0", "::"):
        raise SystemExit("shoal: --peer-listen on every interface needs --advertise IP:PORT")
    cluster = _cluster_config(args.cluster) if args.cluster is not None else None
    tls = _mtls(args.node_cert, args.node_key, args.node_ca, "--node")
    if tls is not None and cluster is not None:
        raise SystemExit("shoal: with --cluster, the cluster file's [tls] is the edge's TLS; "
                         "drop --node-cert/--node-key/--node-ca")
    until = _until_signalled()
    try:
        await serve_edge(args.data, args.listen, args.peer_listen, args.origin or [], until,
                         advertise=args.advertise, p2p=not args.no_p2p,
                         cache_bytes=args.cache_size, cluster=cluster,
                         serve_limit=args.serve_limit, tls=tls,
                         upload_limit=args.upload_limit)
    finally:
        until.close()  # never awaited when the edge refused to start


def _retention_policies(path: Path) -> list[RetentionPolicy]:
    from node.retention.policy import load

    try:
        return load(path)
    except ValueError as exc:
        raise SystemExit(f"shoal: {exc}") from None


async def _retention(args: argparse.Namespace) -> None:
    from rich.console import Console

    from node.clock import wall_ms
    from node.errors import NodeError
    from node.retention.run import run_retention
    from shoal.retentionreport import as_json, open_api, render

    policies = _retention_policies(args.policy)
    tls = _mtls(args.node_cert, args.node_key, args.node_ca, "--node")
    api = await open_api(args.data, args.node, args.cluster, tls)
    try:
        report = await run_retention(api, policies, wall_ms(), args.dry_run)
    except NodeError as exc:
        raise SystemExit(f"shoal: retention failed: {type(exc).__name__}: {exc}") from None
    finally:
        await api.close()
    if args.json:
        print(as_json(report))
    else:
        render(report, Console())


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


def _parse(argv: list[str]) -> tuple[argparse.Namespace, settings.Resolved]:
    """Flags over environment over config file over built-in defaults (shoal/config.py)."""
    parser = _parser()
    try:
        resolved = settings.apply(parser, argv)
    except settings.ConfigError as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    args = parser.parse_args(argv)
    settings.settle(parser, args, settings.explicit(_parser(), argv), resolved)
    return args, resolved


def _show_config(args: argparse.Namespace, argv: list[str]) -> int:
    from shoal.configshow import render

    rest = list(args.rest)
    while rest and rest[0] == "--json":  # argparse leaves it here after `show`
        args.json = True
        rest.pop(0)
    command = rest.pop(0) if rest else "serve"
    if command not in settings.subcommands(_parser()) or command == "config":
        raise SystemExit(f"shoal: config show: {command!r} is not a command")
    # The global options given before `config`, then the command as it would be run.
    globals_ = argv[:argv.index("config")]
    target, resolved = _parse([*globals_, command, *rest])
    render(resolved, target, args.json)
    return 0


async def _push(args: argparse.Namespace) -> None:
    from shoal.transfer.push import push

    tally, board = await push(args.source, _image_ref(args), _credentials(args),
                              mount_from=args.mount_from, jobs=args.jobs,
                              verify_tls=not args.insecure, quiet=args.quiet)
    board.summary(tally, args.json)


async def _pull(args: argparse.Namespace) -> None:
    from shoal.transfer.pull import pull

    tally, board = await pull(_image_ref(args), args.destination, _credentials(args),
                              jobs=args.jobs, verify_tls=not args.insecure, quiet=args.quiet,
                              name=args.name)
    board.summary(tally, args.json)


def _image_ref(args: argparse.Namespace) -> Any:
    from shoal.transfer.reference import parse

    try:
        return parse(args.reference, args.insecure)
    except ValueError as exc:
        raise SystemExit(f"shoal: {exc}") from None


def _credentials(args: argparse.Namespace) -> Any:
    from shoal.transfer.client import Credentials

    if args.user is None and args.password is None:
        return None
    if args.user is None or args.password is None:
        raise SystemExit("shoal: --user and --password go together "
                         "(or SHOAL_USER and SHOAL_PASSWORD)")
    return Credentials(args.user, args.password)


def _transfer(run: Any) -> int:
    """Run a push or pull; a refusal or a broken image is a one-line error and status 1."""
    from shoal.transfer.client import RegistryError
    from shoal.transfer.source import SourceError

    try:
        uvloop.run(run)
    except (RegistryError, SourceError) as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"shoal: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("shoal: interrupted; blobs already moved stay (a rerun skips them)",
              file=sys.stderr)
        return 130
    return 0


def _listening(server: Coroutine[Any, Any, None]) -> int:
    """Run a serving command; an address it cannot listen on, or a start it refuses (a
    folder in use), is a one-line error."""
    from node.errors import InvalidArgument

    try:
        uvloop.run(server)
    except InvalidArgument as exc:
        print(f"shoal: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):
            raise
        print(f"shoal: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args, _ = _parse(argv)
    configure_logs(args.log_level, args.log_format)
    pin_allocator()
    if getattr(args, "audit_log", None) is not None:
        from gateway.auth.audit import write_to

        write_to(args.audit_log)
    if args.command == "serve":
        logging.getLogger(__name__).info("registry on %s://%s:%d, data in %s",
                                         "https" if args.tls_cert else "http", *args.listen,
                                         args.data.resolve())
        return _listening(_serve(args))
    elif args.command == "node":
        return _listening(_node(args))
    elif args.command == "gateway":
        return _listening(_gateway(args))
    elif args.command == "edge":
        return _listening(_edge(args))
    elif args.command == "retention":
        uvloop.run(_retention(args))
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
    elif args.command == "push":
        return _transfer(_push(args))
    elif args.command == "pull":
        return _transfer(_pull(args))
    elif args.command == "config":
        return _show_config(args, argv)
    return 0
