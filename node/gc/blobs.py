"""Blob collection: stamp blobs found unreferenced, delete those whose stamp is older than
the grace period and unchanged since the snapshot that found them unreferenced.

Deleting a blob drops its references on its chunks (ChunkStore.add_refs), which stamps
the chunks that reach zero; node/gc/chunks.py collects those after their own grace.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import lmdb

from node.blobs import ChunkRefs
from node.chunkstore import ChunkStore
from node.clock import STAMP
from node.gc import reachability
from node.gc.pacing import Pacer
from node.index import Index, fetch
from node.recipe import Recipe

# Blobs per write transaction: each drops its recipe's references there, and a long
# transaction holds both the index's write lock and the interpreter.
BATCH = 16


@dataclass(frozen=True, slots=True)
class BlobSurvey:
    """One snapshot: every blob, the live ones, and the stamps of unreferenced ones."""

    all: frozenset[str]
    live: frozenset[str]
    stamps: dict[str, int]

    @property
    def unreferenced(self) -> set[str]:
        return set(self.all - self.live)

    @property
    def unstamped(self) -> set[str]:
        return self.unreferenced - self.stamps.keys()


@dataclass(frozen=True, slots=True)
class DeletedBlob:
    digest: str
    size: int


class BlobSweeper:
    def __init__(self, index: Index, chunks: ChunkStore, refs: ChunkRefs | None = None
                 ) -> None:
        self._index = index
        self._chunks = chunks
        # A cluster member's recipes hold no local references (node/blobs.py).
        self._refs: ChunkRefs = chunks if refs is None else refs
        self._blobs = index.db("blobs")
        self._stamps = index.db("unreferenced_blobs")

    def survey(self, cluster_live: frozenset[str] | None = None) -> BlobSurvey:
        """`cluster_live`: the live set a cluster's coordinator gathered from every member,
        which replaces this node's own view of its registry tables."""
        def run(txn: lmdb.Transaction) -> BlobSurvey:
            every = frozenset(bytes(k).decode() for k, _ in txn.cursor(db=self._blobs))
            live = (frozenset(reachability.live_blobs(self._index, txn))
                    if cluster_live is None else every & cluster_live)
            stamps = {bytes(k).decode(): STAMP.unpack(bytes(v))[0]
                      for k, v in txn.cursor(db=self._stamps)}
            return BlobSurvey(every, live, stamps)

        return self._index.read(run)

    def restamp(self, pacer: Pacer, cluster_live: frozenset[str] | None = None) -> BlobSurvey:
        """A real run's survey: stamps of blobs referenced again (or gone) dropped, blobs newly
        found unreferenced stamped, and the survey taken again after (only that later
        snapshot may let them go)."""
        survey = self.survey(cluster_live)
        self.forget(sorted(d for d in survey.stamps if d in survey.live or d not in survey.all),
                    pacer)
        fresh = sorted(survey.unstamped)
        if fresh:
            self.stamp(fresh, pacer)
            survey = self.survey(cluster_live)
        return survey

    def stamp(self, digests: Sequence[str], pacer: Pacer) -> None:
        """Stamp `digests` as unreferenced from now. Only a later snapshot may let them go:
        one taken before the stamp could have missed a reference made meanwhile."""
        for start in range(0, len(digests), BATCH):
            group = digests[start:start + BATCH]

            def run(txn: lmdb.Transaction, group: Sequence[str] = group) -> None:
                now = STAMP.pack(self._chunks.clock())
                for digest in group:
                    k = digest.encode()
                    if fetch(txn, k, self._blobs) is not None:
                        txn.put(k, now, db=self._stamps, overwrite=False)

            self._index.write(run)
            pacer.rest()

    def forget(self, digests: Sequence[str], pacer: Pacer) -> None:
        """Drop stamps of blobs referenced again or gone. Always safe: a missing stamp only
        makes a blob wait longer."""
        for start in range(0, len(digests), BATCH):
            group = digests[start:start + BATCH]

            def run(txn: lmdb.Transaction, group: Sequence[str] = group) -> None:
                for digest in group:
                    txn.delete(digest.encode(), db=self._stamps)

            self._index.write(run)
            pacer.rest()

    def delete(self, going: Sequence[tuple[str, int]], pacer: Pacer) -> list[DeletedBlob]:
        """Delete each (digest, stamp) whose stamp is still exactly that one: any reference
        made since the survey removed it (reachability.referenced)."""
        deleted: list[DeletedBlob] = []
        for start in range(0, len(going), BATCH):
            group = going[start:start + BATCH]

            def run(txn: lmdb.Transaction,
                    group: Sequence[tuple[str, int]] = group) -> list[DeletedBlob]:
                done = []
                for digest, stamp in group:
                    k = digest.encode()
                    raw = fetch(txn, k, self._stamps)
                    if raw is None or STAMP.unpack(raw)[0] != stamp:
                        continue
                    txn.delete(k, db=self._stamps)
                    packed = fetch(txn, k, self._blobs)
                    if packed is None:
                        continue
                    recipe = Recipe.unpack(packed)
                    self._refs.add_refs(txn, recipe, -1)
                    txn.delete(k, db=self._blobs)
                    done.append(DeletedBlob(digest, recipe.size))
                return done

            deleted += self._index.write(run)
            pacer.rest()
        return deleted

    def recipes(self, digests: Sequence[str]) -> dict[str, Recipe]:
        def run(txn: lmdb.Transaction) -> dict[str, Recipe]:
            found = {}
            for digest in digests:
                packed = fetch(txn, digest.encode(), self._blobs)
                if packed is not None:
                    found[digest] = Recipe.unpack(packed)
            return found

        return self._index.read(run)
