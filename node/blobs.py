"""Blobs: OCI digests mapped to recipes, with chunk reference counts kept in step."""

from __future__ import annotations

from typing import Protocol

import lmdb

from node.api import BlobInfo
from node.digests import validate_digest
from node.errors import InvalidArgument, NotFound
from node.gc import reachability
from node.index import Index, fetch
from node.recipe import Recipe


class ChunkRefs(Protocol):
    """Where a recipe's references on its chunks are kept (node.chunkstore.ChunkStore)."""

    def add_refs(self, txn: lmdb.Transaction, recipe: Recipe, delta: int) -> None: ...


class DetachedRefs:
    """The references of a cluster member's recipes. A recipe lives on its blob's owners
    and its chunks on theirs, mostly other nodes, so no local count could be right: the
    chunks are not checked here (the cluster client checked them on their owners) and a
    cluster finds garbage by marking what every node's recipes use."""

    def add_refs(self, txn: lmdb.Transaction, recipe: Recipe, delta: int) -> None:
        return None


class BlobStore:
    def __init__(self, index: Index, chunks: ChunkRefs) -> None:
        self._index = index
        self._chunks = chunks
        self._blobs = index.db("blobs")

    def stat(self, digest: str, referencing: bool = False) -> BlobInfo | None:
        """With `referencing`, a stamp garbage collection left is cleared, in a write
        transaction that finds the blob still there (like ChunkStore.has reviving a chunk):
        in a cluster a link is written on other nodes than the recipe, and cannot clear
        the stamp itself. Repair's stats leave stamps alone, or no garbage would go."""
        stamps = self._index.db("unreferenced_blobs")
        key = digest.encode()

        def look(txn: lmdb.Transaction) -> tuple[bytes | None, bool]:
            return fetch(txn, key, self._blobs), fetch(txn, key, stamps) is not None

        packed, stamped = self._index.read(look)
        if packed is not None and referencing and stamped:
            def revive(txn: lmdb.Transaction) -> bytes | None:
                txn.delete(key, db=stamps)
                return fetch(txn, key, self._blobs)  # None: collected since the look-up

            packed = self._index.write(revive)
        if packed is None:
            return None
        recipe = Recipe.unpack(packed)
        return BlobInfo(digest, recipe.size, len(recipe))

    def recipe(self, digest: str) -> Recipe:
        packed = self._index.read(lambda txn: fetch(txn, digest.encode(), self._blobs))
        if packed is None:
            raise NotFound(f"blob {digest} is not stored")
        return Recipe.unpack(packed)

    def commit(self, digest: str, recipe: Recipe) -> BlobInfo:
        """Record `digest` as `recipe`, whose chunks must all be stored (NotFound names the
        first missing). Committing an existing digest is a no-op: content addressing makes
        it the same bytes."""
        validate_digest(digest)
        if not recipe and digest not in EMPTY_DIGESTS:
            raise InvalidArgument(f"an empty recipe cannot be {digest}")

        def run(txn: lmdb.Transaction) -> BlobInfo:
            return self.commit_in(txn, digest, recipe)

        return self._index.write(run)

    def commit_in(self, txn: lmdb.Transaction, digest: str, recipe: Recipe,
                  refs_held: bool = False) -> BlobInfo:
        """Commit inside the caller's transaction. With `refs_held`, the caller already
        holds one reference per recipe entry (an upload session's) and hands them over:
        to the new blob, or dropped when the blob already exists."""
        reachability.referenced(self._index, txn, [digest])
        existing = fetch(txn, digest.encode(), self._blobs)
        if existing is not None:
            if refs_held:
                self._chunks.add_refs(txn, recipe, -1)
            old = Recipe.unpack(existing)
            return BlobInfo(digest, old.size, len(old))
        if not refs_held:
            self._chunks.add_refs(txn, recipe, +1)
        txn.put(digest.encode(), recipe.pack(), db=self._blobs)
        return BlobInfo(digest, recipe.size, len(recipe))

    def delete(self, digest: str) -> bool:
        def run(txn: lmdb.Transaction) -> bool:
            packed = fetch(txn, digest.encode(), self._blobs)
            if packed is None:
                return False
            self._chunks.add_refs(txn, Recipe.unpack(packed), -1)
            txn.delete(digest.encode(), db=self._blobs)
            return True

        return self._index.write(run)


EMPTY_DIGESTS = frozenset({
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
})
