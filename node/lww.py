"""Last-writer-wins entries: how mutable metadata converges across a blob's replicas.

Tags, a repository's manifests and its blob links are LWW registers. Each value carries
the hybrid-clock stamp of the write that made it and whether it is live or a tombstone
(a delete is a write too, so a replica that missed it cannot bring the entry back). Two
replicas that have seen the same writes hold the same values whatever order the writes
arrived in: the higher stamp wins, and equal stamps are ordered by their bytes.
"""

from __future__ import annotations

import struct
from typing import Any

import lmdb

from node.index import fetch

_HEAD = struct.Struct(">QB")
LIVE = 1
TOMBSTONE = 0


def pack(stamp: int, payload: bytes | None) -> bytes:
    """An entry: `payload` None is a tombstone."""
    if payload is None:
        return _HEAD.pack(stamp, TOMBSTONE)
    return _HEAD.pack(stamp, LIVE) + payload


def stamp_of(raw: bytes) -> int:
    return int(_HEAD.unpack_from(raw)[0])


def payload(raw: bytes | None) -> bytes | None:
    """The live value of an entry; None for a tombstone or no entry."""
    if raw is None:
        return None
    _, state = _HEAD.unpack_from(raw)
    return raw[_HEAD.size:] if state == LIVE else None


def wins(new: bytes, old: bytes | None) -> bool:
    if old is None:
        return True
    new_stamp, old_stamp = stamp_of(new), stamp_of(old)
    return new_stamp > old_stamp or (new_stamp == old_stamp and new > old)


def put(txn: lmdb.Transaction, db: Any, key: bytes, entry: bytes) -> bool:
    """Store `entry` unless the stored one wins over it; whether it was stored."""
    if not wins(entry, fetch(txn, key, db)):
        return False
    txn.put(key, entry, db=db)
    return True


def get(txn: lmdb.Transaction, db: Any, key: bytes) -> bytes | None:
    """The live value under `key`, None when absent or deleted."""
    return payload(fetch(txn, key, db))
