"""Pieces: runs of consecutive chunks of a recipe, the unit a swarm fetch asks one source
for. A few MiB keeps the cost per request (a call, a schedule decision, a file in the
cache) small against the bytes moved, and still gives a blob enough pieces to spread."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from node.recipe import Recipe

PIECE_BYTES = 1 << 20


@dataclass(eq=False, slots=True)
class Piece:
    index: int
    first: int                  # recipe index of its first chunk
    end: int                    # one past its last chunk
    size: int                   # raw bytes
    ids: list[bytes]
    lengths: list[int]
    next: int = 0               # first chunk not yet here: a retry resumes from it
    fetching: bool = False
    local: bool = False         # was already cached when the pull began
    direct: bool = False        # peers failed us for it: owners must send it, not redirect
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Set (and replaced) whenever chunks land: readers stream a piece as it arrives.
    landed: asyncio.Event = field(default_factory=asyncio.Event)
    # source -> monotonic time before which it is not asked again for this piece
    avoid: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.next = self.first

    def mask(self) -> int:
        """Bits of the chunks still missing, over the recipe's indexes."""
        return ((1 << (self.end - self.next)) - 1) << self.next

    def missing(self) -> list[bytes]:
        return self.ids[self.next - self.first:]

    def reset(self) -> None:
        self.next = self.first
        self.done.clear()

    def nudge(self) -> None:
        """Wake the readers waiting for more of this piece."""
        self.landed.set()
        self.landed = asyncio.Event()


def plan(recipe: Recipe, piece_bytes: int = PIECE_BYTES) -> list[Piece]:
    pieces: list[Piece] = []
    ids: list[bytes] = []
    lengths: list[int] = []
    first = size = 0
    for index, (cid, length) in enumerate(recipe.entries()):
        ids.append(cid)
        lengths.append(length)
        size += length
        if size >= piece_bytes:
            pieces.append(Piece(len(pieces), first, index + 1, size, ids, lengths))
            ids, lengths, first, size = [], [], index + 1, 0
    if ids:
        pieces.append(Piece(len(pieces), first, len(recipe), size, ids, lengths))
    return pieces
