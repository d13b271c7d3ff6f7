"""Where things live: rendezvous (highest-random-weight) hashing.

Every key (a chunk id, a blob digest, a repository name, an upload id) ranks all members
by a hash of (member id, key); its owners are the first R. Adding a member moves only
the keys it now ranks first for; removing one moves only the keys it owned. Every party
computes the same ranking from the same member list, so nothing is stored or agreed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, TypeVar


class Named(Protocol):
    @property
    def id(self) -> str: ...


M = TypeVar("M", bound=Named)

# Keys of different kinds never collide, and a repository named like a digest is still a
# repository.
CHUNK = b"c"
BLOB = b"b"
REPOSITORY = b"r"
UPLOAD = b"u"


def weight(member_id: str, key: bytes) -> int:
    digest = hashlib.blake2b(key, digest_size=8, key=member_id.encode()[:64]).digest()
    return int.from_bytes(digest, "big")


def rank(members: Sequence[M], kind: bytes, key: bytes | str) -> list[M]:
    """All members, the most preferred owner of `key` first."""
    k = kind + (key.encode() if isinstance(key, str) else key)
    return sorted(members, key=lambda m: (weight(m.id, k), m.id), reverse=True)


def owners(members: Sequence[M], kind: bytes, key: bytes | str, replicas: int) -> list[M]:
    return rank(members, kind, key)[:replicas]
