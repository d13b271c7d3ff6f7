"""Running sha256 of upload sessions, so finishing a push need not reread the blob.

The session itself lives on the node and outlives this gateway; the hash is only a cache.
An entry is valid for exactly one session size: when the size has moved on without us
(another gateway took a chunk, or we restarted), the entry is useless and the blob is
rehashed from storage at the end instead.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

# The algorithm clients push with; sha512 pushes are rare and are rehashed at the end.
RUNNING_ALGORITHM = "sha256"


class UploadHashes:
    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()

    def take(self, upload_id: str, offset: int) -> hashlib._Hash | None:
        """The hash of the session's first `offset` bytes, removed from the cache so two
        concurrent requests never feed one hash; None when unknown."""
        entry = self._entries.pop(upload_id, None)
        if offset == 0:
            return hashlib.new(RUNNING_ALGORITHM)
        if entry is None or entry[0] != offset:
            return None
        return entry[1]

    def keep(self, upload_id: str, offset: int, hasher: hashlib._Hash) -> None:
        self._entries[upload_id] = (offset, hasher)
        self._entries.move_to_end(upload_id)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def drop(self, upload_id: str) -> None:
        self._entries.pop(upload_id, None)

    def __len__(self) -> int:
        return len(self._entries)
