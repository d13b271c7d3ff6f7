"""`shoal retention`: apply the retention policies to a registry and show what went."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from node.api import NodeAPI
from node.errors import Unavailable
from node.retention.plan import TAG
from node.retention.run import RetentionReport
from node.rpc.tls import TlsFiles


def render(report: RetentionReport, console: Console) -> None:
    tags = sum(a.kind == TAG for a in report.actions)
    manifests = len(report.actions) - tags
    governed = (f"{report.repositories} "
                f"{'repository' if report.repositories == 1 else 'repositories'} "
                "governed by a policy")
    if not report.actions and not report.skipped:
        console.print(f"Retention{', dry run' if report.dry_run else ''}: nothing to "
                      f"delete in {governed}.")
        return
    table = Table(title="Retention, dry run: nothing changed" if report.dry_run
                  else "Retention")
    table.add_column("repository")
    table.add_column("tag or digest")
    table.add_column("why")
    for a in report.actions:
        table.add_row(a.repository, a.target, a.reason)
    for a in report.skipped:
        table.add_row(f"[dim]{a.repository}[/dim]", f"[dim]{a.target}[/dim]",
                      "[dim]kept: changed since it was planned[/dim]")
    console.print(table)
    verb = "would go" if report.dry_run else "deleted"
    note = f"{tags} tags and {manifests} manifests {verb}, in {governed}."
    if report.actions and not report.dry_run:
        note += " Garbage collection gives the space back (`shoal gc`, or its schedule)."
    console.print(note)


def as_json(report: RetentionReport) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2)


async def open_api(data: Path | None, node: str | None, cluster: Path | None,
                   tls: TlsFiles | None) -> NodeAPI:
    """The registry to apply retention to: a node process, a cluster, or the data folder
    of a `shoal serve` (through its admin socket while it runs, else opened directly)."""
    from node.rpc.client import RemoteNode

    if node is not None:
        return RemoteNode(node, tls=tls)
    if cluster is not None:
        from node.cluster.client import ClusterNode
        from node.cluster.config import load

        try:
            config = load(cluster)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"shoal: cannot use {cluster}: {exc}") from None
        return await ClusterNode.connect(config)
    assert data is not None
    from node.rpc.admin import SOCKET_NAME, socket_target

    if (data / SOCKET_NAME).exists():
        running = RemoteNode(socket_target(data))
        try:
            await running.list_repositories(limit=1)
            return running
        except Unavailable:
            await running.close()  # a socket left by a killed run: nobody serves the folder
    if not (data / "index").is_dir():
        raise SystemExit(f"shoal: {data} holds no registry data")
    from node.local import LocalNode

    return await LocalNode.open(data)
