"""`LocalNode`: the node's client API in-process, for the single-node embedded default.

Every LMDB and disk call runs in a worker thread; reads stream in ~1 MiB pieces with a
bounded read-ahead, so neither a large blob nor a slow client holds more than a few MiB.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lmdb

from node.api import (
    BlobInfo,
    Descriptor,
    ManifestEntry,
    ManifestRecord,
    PutResult,
    StoredChunk,
    UploadInfo,
)
from node.blobs import BlobStore, ChunkRefs, DetachedRefs
from node.chunkstore import ChunkStore
from node.clock import Clock, wall_ms
from node.errors import ResourceExhausted
from node.folderlock import lock_folder, release
from node.hlc import HybridClock
from node.index import Index
from node.packs import PACK_LIMIT, Packs
from node.recipe import ChunkSlice, Recipe
from node.registry import Registry
from node.threadstream import stream_in_thread
from node.uploads import Uploads

T = TypeVar("T")

READ_PIECE = 1 << 20        # bytes handed to the caller per piece
READ_AHEAD = 2              # pieces prepared ahead of the consumer
PUT_GROUP = 4 << 20         # chunk bytes handed to the writing thread at once
GET_BATCH = 1 << 20
DISK_RESERVE = 256 << 20    # at most; 5 % of the file system when that is less


@dataclass(frozen=True, slots=True)
class NodeStats:
    chunks_written: int
    chunks_duplicate: int
    chunks_found: int          # `has` answered "already stored": the chunk was not sent
    stored_bytes: int
    logical_bytes: int
    uploads_expired: int
    chunks: int
    blobs: int
    upload_sessions: int
    corrupt_chunks: int
    pack_bytes: int
    index_bytes: int
    index_map_bytes: int       # the LMDB map: what the index may grow to before it doubles


class LocalNode:
    """A node's storage, called in-process.

    `verify_puts` re-hashes every chunk handed to `put_chunks`. A node serving gRPC must
    (its senders are other processes); in the embedded default the only sender is this
    process's own chunker, which computed each id from the very bytes it hands over, so
    the second hash would only halve ingest. Reads always check the stored bytes against
    the checksum taken when they were written (node/codec.py says why not SHA-256).
    """

    def __init__(self, data_dir: Path, verify_puts: bool = False, member: bool = False,
                 clock: Clock = wall_ms, pack_limit: int = PACK_LIMIT,
                 direct_writes: bool = True) -> None:
        self.data_dir = data_dir
        self.clock = clock
        self._lock = lock_folder(data_dir, "node")
        try:
            self.index = Index(data_dir / "index")
            self.packs = Packs(data_dir / "packs", pack_limit, direct_writes)
        except BaseException:
            release(self._lock)
            raise
        self.chunks = ChunkStore(self.index, self.packs, verify_puts=verify_puts, clock=clock)
        # A cluster member keeps recipes whose chunks live on other nodes (node/blobs.py).
        self.member = member
        refs: ChunkRefs = DetachedRefs() if member else self.chunks
        self.blobs = BlobStore(self.index, refs)
        self.registry = Registry(self.index, self.blobs, HybridClock())
        self.uploads = Uploads(self.index, refs, self.blobs, self._link_finished)

    def _link_finished(self, txn: lmdb.Transaction, repository: str, digest: str,
                       info: BlobInfo) -> None:
        self.registry.link_in(txn, repository, digest, info, self.registry.clock.now())

    @classmethod
    async def open(cls, data_dir: Path, verify_puts: bool = False, member: bool = False,
                   clock: Clock = wall_ms, pack_limit: int = PACK_LIMIT,
                   direct_writes: bool = True) -> LocalNode:
        return await asyncio.to_thread(cls, data_dir, verify_puts, member, clock, pack_limit,
                                       direct_writes)

    async def close(self) -> None:
        def shut() -> None:
            self.packs.close()
            self.index.close()
            release(self._lock)

        await asyncio.to_thread(shut)

    def stats(self) -> NodeStats:
        """Counters since the node started, and the sizes of its tables and folders."""
        def entries(txn: lmdb.Transaction) -> dict[str, int]:
            return {name: int(txn.stat(self.index.db(name))["entries"])
                    for name in ("chunks", "blobs", "uploads", "corrupt")}

        counts = self.index.read(entries)
        # Packs.size tolerates a pack that garbage collection deletes meanwhile.
        packs = sum(self.packs.size(n) for n in self.packs.numbers())
        return NodeStats(
            chunks_written=self.chunks.chunks_written,
            chunks_duplicate=self.chunks.chunks_duplicate,
            chunks_found=self.chunks.chunks_found,
            stored_bytes=self.chunks.stored_bytes,
            logical_bytes=self.uploads.logical_bytes,
            uploads_expired=self.uploads.expired,
            chunks=counts["chunks"], blobs=counts["blobs"],
            upload_sessions=counts["uploads"], corrupt_chunks=counts["corrupt"],
            pack_bytes=packs, index_bytes=self.index.size_on_disk(),
            index_map_bytes=self.index.map_size())

    @staticmethod
    async def _run(fn: Callable[..., T], *args: object) -> T:
        return await asyncio.to_thread(fn, *args)

    # -- chunks ----------------------------------------------------------------------------

    async def has_chunks(self, ids: Sequence[bytes]) -> list[bool]:
        return await self._run(self.chunks.has, ids)

    async def chunk_lengths(self, ids: Sequence[bytes]) -> list[int | None]:
        """Each chunk's raw length, None when it is not stored here."""
        entries = await self._run(self.chunks.entries, ids)
        return [None if e is None else e.raw_length for e in entries]

    def _check_room(self) -> None:
        """ResourceExhausted when the data folder's file system is nearly full. New chunks
        and new upload sessions stop while room remains for the index to commit what is
        in flight (an append, a link, a recipe): a full disk then refuses cleanly instead
        of failing commits half way through a push, and a cluster writes elsewhere."""
        usage = shutil.disk_usage(self.data_dir)
        reserve = min(DISK_RESERVE, usage.total // 20)
        if usage.free < reserve:
            raise ResourceExhausted(f"disk is full: {usage.free} bytes free, "
                                    f"{reserve} kept in reserve")

    async def put_chunks(self, batches: AsyncIterable[Sequence[StoredChunk]]) -> PutResult:
        await self._run(self._check_room)
        put = self.chunks.begin_put()
        writing: asyncio.Task[None] | None = None
        group: list[StoredChunk] = []
        size = 0
        try:
            async for batch in batches:
                group.extend(batch)
                size += sum(len(c.data) for c in batch)
                if size >= PUT_GROUP:
                    # One group is written while the next is received: two in memory at most.
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(self._run(put.write, group))
                    group, size = [], 0
            if writing is not None:
                await writing
            writing = None
            if group:
                await self._run(put.write, group)
            return await self._run(put.commit)
        finally:
            if writing is not None:
                writing.cancel()
                # The write may still be running in its thread: release once it is done.
                with contextlib.suppress(BaseException):
                    await writing
            put.close()

    async def get_chunks(self, ids: Sequence[bytes], skip_missing: bool = False
                         ) -> AsyncIterator[StoredChunk]:
        ids = list(ids)
        step = max(1, GET_BATCH // (16 * 1024))
        get = self.chunks.get_available if skip_missing else self.chunks.get
        for start in range(0, len(ids), step):
            for chunk in await self._run(get, ids[start:start + step]):
                yield chunk

    # -- blobs -------------------------------------------------------------------------------

    async def stat_blob(self, digest: str, referencing: bool = False) -> BlobInfo | None:
        """`referencing`: a writer on another node is about to refer to the blob, which
        restarts its grace period here (node/blobs.py, BlobStore.stat)."""
        return await self._run(self.blobs.stat, digest, referencing)

    async def commit_blob(self, digest: str, recipe: Recipe) -> BlobInfo:
        return await self._run(self.blobs.commit, digest, recipe)

    async def get_recipe(self, digest: str) -> Recipe:
        return await self._run(self.blobs.recipe, digest)

    async def delete_blob(self, digest: str) -> bool:
        return await self._run(self.blobs.delete, digest)

    async def read_blob(self, digest: str, offset: int = 0, length: int | None = None
                        ) -> AsyncIterator[bytes | memoryview]:
        recipe = await self.get_recipe(digest)
        async for piece in self._read_recipe(recipe, offset, length):
            yield piece

    async def _read_recipe(self, recipe: Recipe, offset: int, length: int | None
                           ) -> AsyncIterator[bytes | memoryview]:
        recipe.check_range(offset, length)  # OutOfRange before any byte

        def pieces() -> Iterator[bytes | memoryview]:
            group: list[ChunkSlice] = []
            size = 0
            for s in recipe.slices(offset, length):
                group.append(s)
                size += s.end - s.start
                if size >= READ_PIECE:
                    yield self._assemble(group)
                    group, size = [], 0
            if group:
                yield self._assemble(group)

        async for piece in stream_in_thread(pieces, READ_AHEAD):
            yield piece

    def _assemble(self, group: list[ChunkSlice]) -> bytes | memoryview:
        return self.chunks.read_slices(group)

    # -- repositories, manifests, tags, referrers ----------------------------------------------

    async def list_repositories(self, last: str = "", limit: int = 0) -> list[str]:
        return await self._run(self.registry.list_repositories, last, limit)

    # The keyword arguments beyond NodeAPI's are the replica's side of a cluster write:
    # the stamp the writer chose, and what it already checked elsewhere.

    async def link_blob(self, repository: str, digest: str, known: BlobInfo | None = None,
                        stamp: int | None = None) -> BlobInfo | None:
        return await self._run(self.registry.link_blob, repository, digest, known, stamp)

    async def stat_repository_blob(self, repository: str, digest: str) -> BlobInfo | None:
        return await self._run(self.registry.stat_repository_blob, repository, digest)

    async def unlink_blob(self, repository: str, digest: str, stamp: int | None = None
                          ) -> bool:
        return await self._run(self.registry.unlink_blob, repository, digest, stamp)

    async def put_manifest(self, repository: str, manifest: ManifestRecord,
                           tags: Sequence[str] = (), references: Sequence[str] = (),
                           stamp: int | None = None) -> None:
        await self._run(self.registry.put_manifest, repository, manifest, list(tags),
                        list(references), stamp)

    async def get_manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        return await self._run(self.registry.get_manifest, repository, reference)

    async def delete_manifest(self, repository: str, digest: str, stamp: int | None = None
                              ) -> bool:
        return await self._run(self.registry.delete_manifest, repository, digest, stamp)

    async def delete_tag(self, repository: str, tag: str, stamp: int | None = None) -> bool:
        return await self._run(self.registry.delete_tag, repository, tag, stamp)

    async def list_tags(self, repository: str, last: str = "", limit: int = 0
                        ) -> list[str] | None:
        return await self._run(self.registry.list_tags, repository, last, limit)

    async def list_referrers(self, repository: str, subject: str) -> list[Descriptor]:
        return await self._run(self.registry.list_referrers, repository, subject)

    async def list_manifests(self, repository: str) -> list[ManifestEntry]:
        return await self._run(self.registry.list_manifests, repository)

    async def repository_size(self, repository: str) -> int:
        return await self._run(self.registry.repository_size, repository)

    # -- uploads ------------------------------------------------------------------------------

    async def create_upload(self, repository: str, owner: str = "", upload_id: str = ""
                            ) -> UploadInfo:
        await self._run(self._check_room)
        return await self._run(self.uploads.create, repository, owner, upload_id)

    async def get_upload(self, repository: str, upload_id: str) -> UploadInfo | None:
        return await self._run(self.uploads.get, repository, upload_id)

    async def append_upload(self, repository: str, upload_id: str, offset: int,
                            part: Recipe) -> UploadInfo:
        return await self._run(self.uploads.append, repository, upload_id, offset, part)

    async def upload_recipe(self, repository: str, upload_id: str) -> Recipe:
        return await self._run(self.uploads.recipe, repository, upload_id)

    async def read_upload(self, repository: str, upload_id: str
                          ) -> AsyncIterator[bytes | memoryview]:
        recipe = await self._run(self.uploads.recipe, repository, upload_id)
        async for piece in self._read_recipe(recipe, 0, None):
            yield piece

    async def finish_upload(self, repository: str, upload_id: str, digest: str,
                            expected_size: int | None = None) -> BlobInfo:
        return await self._run(self.uploads.finish, repository, upload_id, digest,
                               expected_size)

    async def cancel_upload(self, repository: str, upload_id: str) -> bool:
        return await self._run(self.uploads.cancel, repository, upload_id)

