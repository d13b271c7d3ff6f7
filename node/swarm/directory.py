"""Where a blob's owners are: the seam between the swarm and the cluster's placement.

Edges ask owners for holders, announce to them, and fall back to them for chunks no peer
has. Against one origin every blob has the same owners (`StaticOwners`, the `--origin`
addresses); a cluster plugs its rendezvous placement in here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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
