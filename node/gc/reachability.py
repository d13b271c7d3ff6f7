"""Which blobs are live: the one place that decides it.

A blob is live while a repository links it (`repo_blobs`) or a manifest still in some
repository refers to it, directly or through an index it is listed in. Upload sessions
need no blob: their parts hold references on the chunks themselves.

Every write that makes a blob referenced calls `referenced`, which drops the blob's
"unreferenced since" stamp inside that write's transaction. The sweep deletes a blob only
when its stamp predates the snapshot that found it unreferenced and is still there in the
sweep's own transaction: nothing referred to it at the snapshot, and nothing has since.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import lmdb

from node import lww
from node.index import Index, fetch


def live_blobs(index: Index, txn: lmdb.Transaction) -> set[str]:
    """The digests of every live blob, as of `txn`'s snapshot."""
    live: set[str] = set()
    # Links and manifests-in-a-repository are last-writer-wins entries (node/lww.py):
    # a tombstone is an unlink or a delete, and keeps nothing alive.
    for raw_key, raw in txn.cursor(db=index.db("repo_blobs")):
        if lww.payload(bytes(raw)) is not None:
            live.add(bytes(raw_key).partition(b"\0")[2].decode())
    todo = [bytes(k).partition(b"\0")[2].decode()
            for k, raw in txn.cursor(db=index.db("repo_manifests"))
            if lww.payload(bytes(raw)) is not None]
    seen: set[str] = set()
    manifests = index.db("manifests")
    while todo:
        digest = todo.pop()
        if digest in seen:
            continue
        seen.add(digest)
        content = fetch(txn, digest.encode(), manifests)
        if content is None:
            continue
        for ref in manifest_references(content):
            live.add(ref)
            todo.append(ref)  # an index lists manifests, whose own references count too
    return live


def referenced(index: Index, txn: lmdb.Transaction, digests: Iterable[str]) -> None:
    """`digests` have just gained a reference (a link, a manifest, a commit): restart their
    grace period from the next time they are found unreferenced."""
    table = index.db("unreferenced_blobs")
    for digest in digests:
        txn.delete(digest.encode(), db=table)


def manifest_references(content: bytes) -> list[str]:
    """The digests a stored manifest refers to: config, layers, listed manifests, blobs,
    subject, and schema 1 layers. Tolerant: anything unreadable refers to nothing (the
    gateway validated it when it was pushed)."""
    try:
        doc = json.loads(content)
    except ValueError:
        return []
    if not isinstance(doc, dict):
        return []
    refs: list[str] = []

    def add(descriptor: Any, key: str = "digest") -> None:
        if isinstance(descriptor, dict) and isinstance(descriptor.get(key), str):
            refs.append(descriptor[key])

    add(doc.get("config"))
    add(doc.get("subject"))
    for field in ("layers", "manifests", "blobs"):
        items = doc.get(field)
        if isinstance(items, list):
            for item in items:
                add(item)
    layers = doc.get("fsLayers")
    if isinstance(layers, list):
        for layer in layers:
            add(layer, "blobSum")
    return refs
