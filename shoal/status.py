"""`shoal status`: every member's health, disk, chunks and repair state, in one table.

Exit status 0 when every member is up and no member found anything under-replicated at
its last repair pass; 1 otherwise, so scripts can wait for a cluster to converge.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import grpc
from rich.console import Console
from rich.table import Table

from node.cluster.config import ClusterConfig, Member
from node.cluster.membership import Membership
from shoal.sizes import format_size
from shoal.v1 import cluster_pb2

STATUS_DEADLINE = 5.0


def _ago(ms: int) -> str:
    if not ms:
        return "not yet"
    return f"{max(0.0, time.time() - ms / 1000):.0f} s ago"


def _fields(status: cluster_pb2.NodeStatus) -> dict[str, Any]:
    """The status as plain JSON values: snake_case names, numbers as numbers."""
    return {f.name: (v if isinstance(v, (int, str)) else list(v))
            for f in status.DESCRIPTOR.fields for v in [getattr(status, f.name)]}


async def _ask(config: ClusterConfig) -> list[tuple[Member, bool, Any]]:
    members = Membership(config)
    try:
        await members.check_all()

        async def one(peer: Any) -> Any:
            if not peer.up:
                return None
            try:
                return await peer.cluster.Status(cluster_pb2.StatusRequest(),
                                                 timeout=STATUS_DEADLINE)
            except grpc.aio.AioRpcError:
                return None

        replies = await asyncio.gather(*(one(p) for p in members.peers))
        return [(Member(p.id, p.address), p.up and r is not None, r)
                for p, r in zip(members.peers, replies, strict=True)]
    finally:
        await members.close()


async def show(config: ClusterConfig | None, node: str | None, as_json: bool) -> int:
    if config is None:
        assert node is not None
        config = ClusterConfig((Member(node, node),), replicas=1, write_quorum=1)
    rows = await _ask(config)
    under = sum(r.under_replicated for _, up, r in rows if up)
    everyone = {m.id for m, _, _ in rows}
    latest_start = max((r.started_ms for _, up, r in rows if up), default=0)
    # Converged only once every member has finished a pass that began with all members up
    # and after the last of them started: a pass from before a member restarted (perhaps
    # with an empty disk) cannot have found what that member lacks.
    pending = len(rows) > 1 and any(
        up and (set(r.repair_view) != everyone or r.last_pass_began_ms <= latest_start)
        for _, up, r in rows)
    healthy = all(up for _, up, _ in rows)
    if as_json:
        print(json.dumps({
            "members": [{"id": m.id, "address": m.address, "up": up,
                         **(_fields(r) if up else {})} for m, up, r in rows],
            "under_replicated": under, "healthy": healthy,
            "converged": healthy and under == 0 and not pending,
        }, indent=2))
    else:
        table = Table(title=f"Shoal cluster: {len(rows)} members, R={config.replicas}, "
                            f"W={config.write_quorum}")
        for column in ("member", "address", "health", "role", "disk used", "disk free",
                       "chunks", "blobs", "under-replicated", "corrupt", "last repair"):
            table.add_column(column, justify="right" if column in {
                "disk used", "disk free", "chunks", "blobs", "under-replicated",
                "corrupt"} else "left")
        for m, up, r in rows:
            if not up:
                table.add_row(m.id, m.address, "[red]down[/red]", *["-"] * 8)
                continue
            table.add_row(m.id, m.address, "[green]up[/green]", r.role,
                          format_size(r.pack_bytes + r.index_bytes), format_size(r.disk_free_bytes),
                          str(r.chunks), str(r.blobs), str(r.under_replicated),
                          str(r.corrupt_chunks), _ago(r.last_repair_ms))
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(table)
        state = ("converged: every member up, nothing under-replicated"
                 if healthy and under == 0 and not pending else
                 f"{sum(not up for _, up, _ in rows)} members down, "
                 f"{under} items under-replicated"
                 + (", a repair pass has not finished yet" if pending else ""))
        console.print(f"under-replicated: {under} — {state}")
    return 0 if healthy and under == 0 and not pending else 1
