"""The node's LMDB index: one environment, one named sub-database per table.

Chunk bytes live in pack files, never in the B-tree. Every call here is synchronous and
short; the async layers run them in worker threads so the event loop never waits on LMDB.
The map grows by doubling when a write finds it full, so the initial size is no limit.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import lmdb

from node.errors import InvalidArgument, ResourceExhausted

T = TypeVar("T")

TABLES = (
    "meta",            # b"format" -> FORMAT
    "chunks",          # chunk id -> ChunkEntry
    "unreferenced",    # chunk id -> ms (8 bytes) since when its reference count is zero
    "pack_ends",       # pack number (4 bytes) -> end of its last committed chunk (8 bytes)
    "corrupt",         # chunk id -> when and where verification failed
    "blobs",           # digest -> packed recipe
    "unreferenced_blobs",  # digest -> ms (8 bytes) since when nothing refers to the blob
    "repositories",    # name -> b""
    "repo_blobs",      # name \0 digest -> b""
    "manifests",       # digest -> content
    "repo_manifests",  # name \0 digest -> JSON metadata
    "tags",            # name \0 tag -> digest
    "referrers",       # name \0 subject \0 digest -> JSON descriptor
    "uploads",         # upload id -> JSON session
    "upload_parts",    # upload id \0 part number (4 bytes) -> packed recipe
)

INITIAL_MAP_SIZE = 1 << 30
# Bumped whenever a table's encoding changes, so a node never misreads older data.
FORMAT = b"shoal-index-2"


def fetch(txn: lmdb.Transaction, k: bytes, db: Any) -> bytes | None:
    """txn.get, typed: this environment never hands out buffers."""
    value = txn.get(k, db=db)
    return None if value is None else bytes(value)


def fetch_many(txn: lmdb.Transaction, keys: Iterable[bytes], db: Any
               ) -> list[tuple[bytes, bytes]]:
    """(key, value) of each of `keys` that is present, looked up in one C loop; typed as
    `fetch` is (this environment never hands out buffers)."""
    return cast("list[tuple[bytes, bytes]]", txn.cursor(db=db).getmulti(list(keys)))


def key(*parts: str | bytes) -> bytes:
    """A composite key: parts joined by NUL, which no repository name, tag or digest has."""
    return b"\0".join(p.encode() if isinstance(p, str) else p for p in parts)


class Index:
    def __init__(self, path: Path, map_size: int = INITIAL_MAP_SIZE) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path), map_size=map_size, max_dbs=len(TABLES) + 4, max_readers=256,
            subdir=True,
        )
        self.dbs: dict[str, Any] = {name: self.env.open_db(name.encode()) for name in TABLES}
        with self.env.begin(write=True) as txn:
            found = txn.get(b"format", db=self.dbs["meta"])
            if found is None:
                txn.put(b"format", FORMAT, db=self.dbs["meta"])
            elif bytes(found) != FORMAT:
                self.env.close()
                raise SystemExit(f"{path} holds index format {bytes(found).decode()!r}; "
                                 f"this Shoal reads {FORMAT.decode()!r}")
        # LMDB may only resize while no transaction is open in this process, so every
        # transaction holds the gate shared and growing takes it alone.
        self._gate = threading.Condition()
        self._open_txns = 0
        self._growing = False

    @contextmanager
    def _shared(self) -> Iterator[None]:
        with self._gate:
            while self._growing:
                self._gate.wait()
            self._open_txns += 1
        try:
            yield
        finally:
            with self._gate:
                self._open_txns -= 1
                self._gate.notify_all()

    def read(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        try:
            with self._shared(), self.env.begin(buffers=False) as txn:
                return fn(txn)
        except lmdb.BadValsizeError:
            raise InvalidArgument("a name or reference is too long to look up") from None

    def write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        """Run `fn` in one write transaction, committed durably; retried after growing
        the map if it ran out of room. `fn` must not have side effects outside LMDB."""
        while True:
            try:
                with self._shared(), self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._grow()
            except lmdb.BadValsizeError:
                raise InvalidArgument("a name or reference is too long to store") from None
            except lmdb.DiskError as exc:
                # The commit could not be written: nothing of it is visible, and the
                # caller (another member, a gateway) should go elsewhere.
                raise ResourceExhausted(f"disk is full: the index cannot grow ({exc})") from None

    def _grow(self) -> None:
        with self._gate:
            while self._growing or self._open_txns:
                self._gate.wait()
            self._growing = True
        try:
            self.env.set_mapsize(self.env.info()["map_size"] * 2)
        finally:
            with self._gate:
                self._growing = False
                self._gate.notify_all()

    def db(self, name: str) -> Any:
        return self.dbs[name]

    def scan_prefix(self, txn: lmdb.Transaction, table: str, prefix: bytes,
                    after: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Items whose key starts with `prefix`, in key order, strictly after
        prefix + after when `after` is given."""
        cursor = txn.cursor(db=self.dbs[table])
        start = prefix + after
        if not cursor.set_range(start):
            return
        for raw_k, raw_v in cursor:
            k = bytes(raw_k)
            if not k.startswith(prefix):
                break
            if after and k == start:
                continue
            yield k, bytes(raw_v)

    def batches(self, table: str, size: int, after: bytes = b""
                ) -> Iterator[list[tuple[bytes, bytes]]]:
        """Every item of `table` after `after`, in key order, `size` items per read
        transaction: a walk of a large table that never holds a snapshot for long (items
        added or removed meanwhile may or may not be seen)."""
        while True:
            def run(txn: lmdb.Transaction, after: bytes = after) -> list[tuple[bytes, bytes]]:
                return list(itertools.islice(self.scan_prefix(txn, table, b"", after), size))

            batch = self.read(run)
            if batch:
                yield batch
            if len(batch) < size:
                return
            after = batch[-1][0]

    def size_on_disk(self) -> int:
        info = self.env.info()
        stat = self.env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def map_size(self) -> int:
        return int(self.env.info()["map_size"])

    def close(self) -> None:
        self.env.close()
