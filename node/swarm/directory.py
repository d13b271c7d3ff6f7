"""Where a blob's owners are: the seam between the swarm and the cluster's placement.

Edges ask owners for holders, announce to them, and fall back to them for chunks no peer
has. Against one origin every blob has the same owners (`StaticOwners`, the `--origin`
addresses); in front of a cluster they are the blob digest's rendezvous owners
(`ClusterOwners`), so each blob's holder book lives on the members that keep its recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from node.cluster import placement
from node.cluster.membership import Membership


class OwnerDirectory(Protocol):
    """Where a blob's owners are: the seam for the cluster's placement."""

    def owners_of(self, digest: str) -> Sequence[str]:
        """gRPC addresses of the nodes that own `digest`."""
        ...


class StaticOwners:
    """Every blob owned by the same nodes: the `--origin` addresses."""

    def __init__(self, addresses: Sequence[str]) -> None:
        self.addresses = list(addresses)

    def owners_of(self, digest: str) -> Sequence[str]:
        return self.addresses


class ClusterOwners:
    """A blob's owners in a cluster: the first R live members of its digest's placement
    order (placement.BLOB), the same members that keep its recipe.

    Live ones only, so a member that is down is replaced by the next in order (the stand-in
    that took its writes) and an edge neither announces to it nor waits on it. When no
    member is known to be up, the owners by placement are returned all the same: asking
    them is how an edge finds out they are back."""

    def __init__(self, members: Membership) -> None:
        self.members = members

    def owners_of(self, digest: str) -> Sequence[str]:
        replicas = self.members.config.replicas
        live = self.members.write_order(placement.BLOB, digest)[:replicas]
        if not live:
            live = list(self.members.owners(placement.BLOB, digest))
        return [p.address for p in live]

    def everyone(self) -> list[str]:
        """Every member's address: the owners an edge heartbeats from its start."""
        return [p.address for p in self.members.peers]
