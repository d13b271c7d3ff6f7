"""`shoal gc`: ask a running node, or every member of a cluster, to collect garbage and
show what went (or would go)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table

from node.cluster.config import ClusterConfig
from node.cluster.gc import ClusterGcReport
from node.gc.collector import GcReport
from node.rpc.tls import TlsFiles
from shoal.sizes import format_size

LISTED = 20  # blob digests shown with --verbose before "and N more"


def render(report: GcReport, console: Console, verbose: bool = False) -> None:
    verb = "would go" if report.dry_run else "went"
    table = Table(title=("Garbage collection, dry run: nothing was changed" if report.dry_run
                         else f"Garbage collection in {report.seconds:.1f} s"))
    table.add_column("what")
    table.add_column(verb, justify="right")
    table.add_column("bytes", justify="right")
    table.add_row("blobs", str(report.blobs_deleted), format_size(report.blob_bytes))
    table.add_row("chunks", str(report.chunks_deleted), format_size(report.chunk_bytes))
    table.add_row("packs compacted", str(report.packs_compacted),
                  f"{format_size(report.bytes_moved)} moved")
    table.add_row("disk space back", "", format_size(report.disk_bytes_reclaimed))
    table.add_row("[dim]waiting out the grace period[/dim]",
                  f"[dim]{report.blobs_waiting} blobs, {report.chunks_waiting} chunks[/dim]",
                  "")
    console.print(table)
    if verbose and report.blobs:
        for digest in report.blobs[:LISTED]:
            console.print(f"  {digest}")
        if report.blobs_deleted > LISTED:
            console.print(f"  … and {report.blobs_deleted - LISTED} more")


def as_json(report: GcReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2)


async def run(data: Path, node: str | None, dry_run: bool, deadline: float,
              tls: TlsFiles | None) -> GcReport:
    """The report of a collection by the node at `node`, or by the registry serving
    `data` (through its admin socket)."""
    from node.rpc.admin import SOCKET_NAME, collect_garbage, socket_target

    target = node if node is not None else socket_target(data)
    try:
        return await collect_garbage(target, dry_run, deadline, tls)
    except grpc.aio.AioRpcError as exc:
        if node is None and exc.code() == grpc.StatusCode.UNAVAILABLE:
            raise SystemExit(f"shoal: no registry is running on {data} (nothing answers on "
                             f"{data / SOCKET_NAME}); start it with `shoal serve --data "
                             f"{data}`, or use --node HOST:PORT") from None
        if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise SystemExit(f"shoal: {target} does not collect garbage on its own: it is a "
                             "cluster member, whose garbage only a mark over every member "
                             "finds; use `shoal gc --cluster FILE` (docs/gc.md)") from None
        raise SystemExit(f"shoal: garbage collection on {target} failed: "
                         f"{exc.code().name}: {exc.details()}") from None


def render_cluster(report: ClusterGcReport, console: Console) -> None:
    title = ("Cluster garbage collection, dry run: nothing was changed" if report.dry_run
             else f"Cluster garbage collection in {report.seconds:.1f} s")
    # Each member counts its own copies: a blob kept on R owners is R recipes deleted.
    table = Table(title=title, caption=f"{report.live_blobs} live blobs across the cluster; "
                  f"chunk filter {format_size(report.filter_bytes)}; counts are per copy")
    verb = "would go" if report.dry_run else "went"
    table.title = f"{title} (what {verb})"
    for name in ("member", "blobs", "bytes", "chunks", "bytes", "packs compacted",
                 "disk back", "waiting"):
        table.add_column(name, justify="left" if name == "member" else "right")

    def row(name: str, r: GcReport, style: str = "") -> None:
        table.add_row(name, str(r.blobs_deleted), format_size(r.blob_bytes), str(r.chunks_deleted),
                      format_size(r.chunk_bytes), str(r.packs_compacted),
                      format_size(r.disk_bytes_reclaimed),
                      f"{r.blobs_waiting} blobs, {r.chunks_waiting} chunks", style=style)

    for member_id, member in sorted(report.members.items()):
        row(member_id, member)
    row("total", report.total, "bold")
    console.print(table)


def cluster_json(report: ClusterGcReport) -> str:
    return json.dumps({"dry_run": report.dry_run, "seconds": report.seconds,
                       "live_blobs": report.live_blobs, "filter_bytes": report.filter_bytes,
                       "members": {mid: dataclasses.asdict(r)
                                   for mid, r in sorted(report.members.items())},
                       "total": dataclasses.asdict(report.total)}, indent=2)


async def run_cluster(config: ClusterConfig, dry_run: bool, deadline: float
                      ) -> ClusterGcReport:
    from node.cluster.gc import ClusterGcRefused, collect_cluster

    try:
        return await collect_cluster(config, dry_run, deadline)
    except ClusterGcRefused as exc:
        raise SystemExit(f"shoal: cluster garbage collection refused: {exc}") from None
