"""The cluster file: who the members are and how many copies to keep.

    replicas = 2          # R: copies of every chunk, recipe and repository's metadata
    write_quorum = 2      # W: copies durably stored before a write is acknowledged

    [[members]]
    id = "node1"          # stable name: placement hashes it, so never reuse or rename
    address = "10.0.0.1:7400"

    [tls]                 # optional: mutual TLS between every member and gateway
    cert = "node.pem"     # relative paths are relative to this file
    key = "node-key.pem"
    ca = "ca.pem"

Every node and gateway of a cluster reads the same file; `shoal node --cluster FILE
--id node1` serves the member of that id on its address.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from node.rpc.tls import TlsFiles


@dataclass(frozen=True, slots=True)
class Member:
    id: str
    address: str


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    members: tuple[Member, ...]
    replicas: int = 2
    write_quorum: int = 2
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a cluster needs at least one member")
        ids = [m.id for m in self.members]
        if len(set(ids)) != len(ids):
            raise ValueError("member ids must be unique")
        if len({m.address for m in self.members}) != len(self.members):
            raise ValueError("member addresses must be unique")
        if not 1 <= self.replicas <= len(self.members):
            raise ValueError(f"replicas must be between 1 and {len(self.members)} "
                             f"(the number of members), not {self.replicas}")
        if not 1 <= self.write_quorum <= self.replicas:
            raise ValueError(f"write_quorum must be between 1 and replicas ({self.replicas}),"
                             f" not {self.write_quorum}")

    def member(self, member_id: str) -> Member:
        for m in self.members:
            if m.id == member_id:
                return m
        raise ValueError(f"no member {member_id!r} in the cluster file "
                         f"(members: {', '.join(m.id for m in self.members)})")


def load(path: Path) -> ClusterConfig:
    """Parse and check a cluster file; ValueError says what is wrong with it."""
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not valid TOML: {exc}") from None
    unknown = set(raw) - {"replicas", "write_quorum", "members", "tls"}
    if unknown:
        raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    members = []
    for entry in raw.get("members", []):
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) \
                or not isinstance(entry.get("address"), str):
            raise ValueError(f"each [[members]] needs an id and an address: {entry!r}")
        members.append(Member(entry["id"], entry["address"]))
    tls = None
    if "tls" in raw:
        section = raw["tls"]
        try:
            files = [path.parent / section[k] for k in ("cert", "key", "ca")]
        except KeyError as exc:
            raise ValueError(f"[tls] needs cert, key and ca: {exc} is missing") from None
        tls = TlsFiles(*files)
    replicas = raw.get("replicas", min(2, len(members)))
    return ClusterConfig(tuple(members), replicas=replicas,
                         write_quorum=raw.get("write_quorum", replicas), tls=tls)


def write(path: Path, config: ClusterConfig) -> None:
    """The file `load` reads back as `config` (TLS aside): for tools that make clusters."""
    lines = [f"replicas = {config.replicas}", f"write_quorum = {config.write_quorum}", ""]
    for m in config.members:
        lines += ["[[members]]", f'id = "{m.id}"', f'address = "{m.address}"', ""]
    path.write_text("\n".join(lines))
