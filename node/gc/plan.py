"""What one collection will do, worked out from snapshots without changing anything.

A dry run reports the plan; a real run carries out exactly its items, each re-checked in
the transaction that acts on it, so both agree on what goes unless the registry changed
in between. Something not stamped yet counts as stamped now: a real run stamps it just
before planning, so both runs see the same moment to within the run's own duration.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from node.chunkstore import ChunkEntry
from node.gc.blobs import BlobSurvey
from node.gc.chunks import ChunkSurvey, LiveCheck
from node.recipe import Recipe


@dataclass(frozen=True, slots=True)
class PackPlan:
    number: int
    size: int   # bytes in the file
    live: int   # bytes of the chunks still indexed once the sweep is done


@dataclass(frozen=True, slots=True)
class Plan:
    cutoff_ms: int
    blobs: list[tuple[str, int]]   # (digest, stamp) to delete
    blob_bytes: int
    blobs_waiting: int             # unreferenced, still inside the grace period
    chunks: list[bytes]            # to remove from the index
    chunk_bytes: int
    chunks_waiting: int
    tails: dict[int, int]          # pack -> committed end, where dead bytes lie past it
    tail_sizes: dict[int, int]     # pack -> bytes past that end
    packs: list[PackPlan]          # to compact (or delete, when nothing in them is live)

    @property
    def tail_bytes(self) -> int:
        return sum(self.tail_sizes.values())

    @property
    def disk_bytes(self) -> int:
        """Bytes of pack files this plan gives back to the file system."""
        return self.tail_bytes + sum(p.size - p.live for p in self.packs)


def going_blobs(survey: BlobSurvey, now_ms: int, cutoff_ms: int
                ) -> tuple[list[tuple[str, int]], int]:
    """The unreferenced blobs whose grace is over, with their stamps; and how many wait."""
    going, waiting = [], 0
    for digest in sorted(survey.unreferenced):
        stamp = survey.stamps.get(digest, now_ms)
        if stamp <= cutoff_ms:
            going.append((digest, stamp))
        else:
            waiting += 1
    return going, waiting


def dropped_refs(recipes: dict[str, Recipe]) -> Counter[bytes]:
    """How many references the deletion of these blobs takes from each chunk."""
    drops: Counter[bytes] = Counter()
    for recipe in recipes.values():
        for chunk_id, _ in recipe.entries():
            drops[chunk_id] += 1
    return drops


def make_plan(blobs: list[tuple[str, int]], blobs_waiting: int, recipes: dict[str, Recipe],
              chunks: ChunkSurvey, dropped: dict[bytes, ChunkEntry], now_ms: int,
              cutoff_ms: int, pack_sizes: dict[int, int], pack_ends: dict[int, int],
              current: int, compact_below: float, is_live: LiveCheck) -> Plan:
    """`dropped`: the entries of the chunks the blob deletions take references from."""
    drops = dropped_refs(recipes)
    # Chunks the blob deletions bring to zero are stamped when that happens, i.e. now.
    candidates: dict[bytes, tuple[ChunkEntry, int]] = {
        cid: (entry, chunks.stamps.get(cid, now_ms)) for cid, entry in chunks.zero.items()}
    for cid, n in drops.items():
        entry = dropped.get(cid)
        if entry is not None and 0 < entry.refs <= n:
            candidates[cid] = (entry, now_ms)
    going: list[bytes] = []
    freed: Counter[int] = Counter()
    chunk_bytes = waiting = 0
    for cid in sorted(candidates):
        entry, stamp = candidates[cid]
        if stamp <= cutoff_ms and not is_live(cid):
            going.append(cid)
            chunk_bytes += entry.stored_length
            freed[entry.pack] += entry.stored_length
        else:
            waiting += 1
    tails: dict[int, int] = {}
    tail_sizes: dict[int, int] = {}
    packs: list[PackPlan] = []
    for number, size in sorted(pack_sizes.items()):
        end = min(pack_ends.get(number, size), size)
        live = chunks.live_bytes.get(number, 0) - freed[number]
        if live == 0 and number != current and size > 0:
            packs.append(PackPlan(number, size, 0))
        elif end > 0 and live / end < compact_below:
            packs.append(PackPlan(number, size, live))
        elif end < size:
            tails[number] = end
            tail_sizes[number] = size - end
    blob_bytes = sum(r.size for r in recipes.values())
    return Plan(cutoff_ms, blobs, blob_bytes, blobs_waiting, going, chunk_bytes, waiting,
                tails, tail_sizes, packs)
