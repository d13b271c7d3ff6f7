"""`ClusterNode`: the node client API over a whole cluster, for stateless gateways.

It holds no state of its own but connections and a clock, so any number of gateways can
front one cluster and an upload begun through one finishes through another.

- Chunks live on their R owners by rendezvous placement (node/cluster/chunks.py).
- A blob's recipe lives on the owners of its digest; a repository's metadata (links,
  manifests, tags, referrers) on the owners of its name. Writes go to the first R live
  members of the key's placement order and are acknowledged once W have them; a member
  that fails is replaced by the next in order (repair moves the copy home later).
- Mutable metadata is last-writer-wins: this client stamps each write once with its
  hybrid clock and sends the same stamped write to every replica (node/lww.py).
- An upload session is scratch state and lives on one member, picked by its id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from typing import TypeVar

from node.api import (
    BlobInfo,
    Descriptor,
    ManifestEntry,
    ManifestRecord,
    PutResult,
    StoredChunk,
    UploadInfo,
)
from node.blobs import EMPTY_DIGESTS
from node.cluster import placement
from node.cluster.chunks import ClusterChunks
from node.cluster.config import ClusterConfig
from node.cluster.membership import Membership, Peer
from node.digests import validate_digest
from node.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from node.hlc import HybridClock
from node.names import validate_repository
from node.recipe import ChunkSlice, Recipe

T = TypeVar("T")

READ_WINDOW = 4 << 20       # raw bytes fetched per step of a read
READ_AHEAD = 2              # windows fetched ahead of the one being sent
READ_PIECE = 1 << 20
GET_WINDOW = 256            # ids fetched per step of get_chunks


class ClusterNode:
    def __init__(self, members: Membership) -> None:
        self.members = members
        self.config = members.config
        self.chunks = ClusterChunks(members)
        self.clock = HybridClock()

    @classmethod
    async def connect(cls, config: ClusterConfig) -> ClusterNode:
        members = Membership(config)
        await members.start()
        return cls(members)

    async def close(self) -> None:
        await self.members.close()

    # -- how a write reaches R members and a read finds one ----------------------------------

    async def _replicate(self, kind: bytes, key: str,
                         write: Callable[[Peer], Awaitable[T]]) -> list[T]:
        """`write` on the first R live members in `key`'s order, standing in the next
        ones for those that fail; the answers once W succeeded. A refusal that every
        replica would give (a bad name, a missing reference) is raised as it is."""
        order = self.members.write_order(kind, key)
        quorum = self.config.write_quorum
        if len(order) < quorum:
            raise Unavailable(f"{len(order)} members are up, a write needs {quorum}")
        answers: list[T] = []
        failures: list[str] = []
        batch, rest = order[:self.config.replicas], order[self.config.replicas:]
        while batch:
            results = await asyncio.gather(*(p.call(write(p)) for p in batch),
                                           return_exceptions=True)
            retry = 0
            for peer, result in zip(batch, results, strict=True):
                if isinstance(result, (Unavailable, ResourceExhausted)):
                    failures.append(f"{peer.id}: {result}")
                    retry += 1
                elif isinstance(result, BaseException):
                    raise result
                else:
                    answers.append(result)
            batch, rest = rest[:retry], rest[retry:]
        if len(answers) < quorum:
            raise Unavailable(f"only {len(answers)} of the {quorum} replicas a write needs "
                              f"took it: {'; '.join(failures)}")
        return answers

    async def _first(self, kind: bytes, key: str, read: Callable[[Peer], Awaitable[T | None]],
                     tries: int | None = None) -> T | None:
        """The first answer that is not None, asking members in `key`'s read order."""
        unavailable: list[str] = []
        order = self.members.read_order(kind, key)
        for peer in order[:tries or len(order)]:
            try:
                answer = await peer.call(read(peer))
            except Unavailable as exc:
                unavailable.append(f"{peer.id}: {exc}")
                continue
            if answer is not None:
                return answer
        if unavailable and len(unavailable) >= min(self.config.replicas, len(order)):
            raise Unavailable("no owner answered: " + "; ".join(unavailable))
        return None

    def _metadata_reads(self) -> int:
        # The owners, and as many stand-ins as members are down: where a write made
        # while owners were down landed.
        return self.config.replicas + sum(not p.up for p in self.members.peers)

    # -- chunks -------------------------------------------------------------------------------

    async def has_chunks(self, ids: Sequence[bytes]) -> list[bool]:
        return await self.chunks.has(ids)

    async def put_chunks(self, batches: AsyncIterable[Sequence[StoredChunk]]) -> PutResult:
        return await self.chunks.put(batches)

    async def get_chunks(self, ids: Sequence[bytes]) -> AsyncIterator[StoredChunk]:
        ids = list(ids)
        for start in range(0, len(ids), GET_WINDOW):
            for chunk, _ in await self.chunks.fetch(ids[start:start + GET_WINDOW]):
                yield chunk

    # -- blobs --------------------------------------------------------------------------------

    async def stat_blob(self, digest: str) -> BlobInfo | None:
        return await self._first(placement.BLOB, digest, lambda p: p.node.stat_blob(digest),
                                 self._metadata_reads())

    async def get_recipe(self, digest: str) -> Recipe:
        async def read(peer: Peer) -> Recipe | None:
            try:
                return await peer.node.get_recipe(digest)
            except NotFound:
                return None

        found = await self._first(placement.BLOB, digest, read, self._metadata_reads())
        if found is None:
            raise NotFound(f"blob {digest} is not stored")
        return found

    async def commit_blob(self, digest: str, recipe: Recipe) -> BlobInfo:
        validate_digest(digest)
        if not recipe and digest not in EMPTY_DIGESTS:
            raise InvalidArgument(f"an empty recipe cannot be {digest}")
        await self.chunks.check_stored(list(recipe.entries()))
        return await self._record_blob(digest, recipe)

    async def _record_blob(self, digest: str, recipe: Recipe) -> BlobInfo:
        """Write a recipe whose chunks are known to be stored to the blob's owners."""
        answers = await self._replicate(placement.BLOB, digest,
                                        lambda p: p.node.commit_blob(digest, recipe))
        return answers[0]

    async def delete_blob(self, digest: str) -> bool:
        results = await asyncio.gather(
            *(p.call(p.node.delete_blob(digest)) for p in self.members.live()),
            return_exceptions=True)
        return any(r is True for r in results)

    async def read_blob(self, digest: str, offset: int = 0, length: int | None = None
                        ) -> AsyncIterator[bytes | memoryview]:
        recipe = await self.get_recipe(digest)
        async for piece in self._read_recipe(recipe, offset, length):
            yield piece

    async def _read_recipe(self, recipe: Recipe, offset: int, length: int | None
                           ) -> AsyncIterator[bytes]:
        recipe.check_range(offset, length)
        windows: list[list[ChunkSlice]] = []
        window: list[ChunkSlice] = []
        size = 0
        for s in recipe.slices(offset, length):
            window.append(s)
            size += s.end - s.start
            if size >= READ_WINDOW:
                windows.append(window)
                window, size = [], 0
        if window:
            windows.append(window)

        async def load(group: list[ChunkSlice]) -> list[bytes]:
            fetched = await self.chunks.fetch([s.chunk_id for s in group])
            return [raw[s.start:s.end] for s, (_, raw) in zip(group, fetched, strict=True)]

        ahead: list[asyncio.Task[list[bytes]]] = []
        try:
            for i in range(len(windows)):
                while len(ahead) <= READ_AHEAD and i + len(ahead) < len(windows):
                    ahead.append(asyncio.create_task(load(windows[i + len(ahead)])))
                parts = await ahead.pop(0)
                piece: list[bytes] = []
                piece_size = 0
                for part in parts:
                    piece.append(part)
                    piece_size += len(part)
                    if piece_size >= READ_PIECE:
                        yield b"".join(piece)
                        piece, piece_size = [], 0
                if piece:
                    yield b"".join(piece)
        finally:
            for task in ahead:
                task.cancel()

    # -- repositories, manifests, tags, referrers ----------------------------------------------

    async def list_repositories(self, last: str = "", limit: int = 0) -> list[str]:
        live = self.members.live()
        results = await asyncio.gather(
            *(p.call(p.node.list_repositories(last, limit)) for p in live),
            return_exceptions=True)
        names: set[str] = set()
        for result in results:
            if isinstance(result, list):
                names.update(result)
        ordered = sorted(names)
        return ordered[:limit] if limit else ordered

    async def link_blob(self, repository: str, digest: str) -> BlobInfo | None:
        validate_repository(repository)
        validate_digest(digest)
        # `referencing` restarts the grace period of a recipe garbage collection stamped:
        # the link is written on the repository's owners, not the blob's.
        info = await self._first(placement.BLOB, digest,
                                 lambda p: p.node.stat_blob(digest, referencing=True),
                                 self._metadata_reads())
        if info is None:
            return None
        stamp = self.clock.now()
        await self._replicate(placement.REPOSITORY, repository,
                              lambda p: p.node.link_blob(repository, digest, info, stamp))
        return info

    async def stat_repository_blob(self, repository: str, digest: str) -> BlobInfo | None:
        return await self._first(placement.REPOSITORY, repository,
                                 lambda p: p.node.stat_repository_blob(repository, digest),
                                 self._metadata_reads())

    async def unlink_blob(self, repository: str, digest: str) -> bool:
        stamp = self.clock.now()
        done = await self._replicate(placement.REPOSITORY, repository,
                                     lambda p: p.node.unlink_blob(repository, digest, stamp))
        return any(done)

    async def put_manifest(self, repository: str, manifest: ManifestRecord,
                           tags: Sequence[str] = (), references: Sequence[str] = ()) -> None:
        stamp = self.clock.now()
        await self._replicate(
            placement.REPOSITORY, repository,
            lambda p: p.node.put_manifest(repository, manifest, tags, references, stamp))

    async def get_manifest(self, repository: str, reference: str) -> ManifestRecord | None:
        return await self._first(placement.REPOSITORY, repository,
                                 lambda p: p.node.get_manifest(repository, reference),
                                 self._metadata_reads())

    async def delete_manifest(self, repository: str, digest: str) -> bool:
        stamp = self.clock.now()
        done = await self._replicate(
            placement.REPOSITORY, repository,
            lambda p: p.node.delete_manifest(repository, digest, stamp))
        return any(done)

    async def delete_tag(self, repository: str, tag: str) -> bool:
        stamp = self.clock.now()
        done = await self._replicate(placement.REPOSITORY, repository,
                                     lambda p: p.node.delete_tag(repository, tag, stamp))
        return any(done)

    async def list_tags(self, repository: str, last: str = "", limit: int = 0
                        ) -> list[str] | None:
        return await self._first(placement.REPOSITORY, repository,
                                 lambda p: p.node.list_tags(repository, last, limit),
                                 self._metadata_reads())

    async def list_referrers(self, repository: str, subject: str) -> list[Descriptor]:
        found = await self._first(placement.REPOSITORY, repository,
                                  lambda p: _or_none(p.node.list_referrers(repository, subject)),
                                  self._metadata_reads())
        return found or []

    async def list_manifests(self, repository: str) -> list[ManifestEntry]:
        found = await self._first(placement.REPOSITORY, repository,
                                  lambda p: _or_none(p.node.list_manifests(repository)),
                                  self._metadata_reads())
        return found or []

    async def repository_size(self, repository: str) -> int:
        # A replica that lacks the repository answers 0: ask the next one then.
        found = await self._first(placement.REPOSITORY, repository,
                                  lambda p: _nonzero(p.node.repository_size(repository)),
                                  self._metadata_reads())
        return found or 0

    # -- uploads ------------------------------------------------------------------------------

    async def create_upload(self, repository: str, owner: str = "") -> UploadInfo:
        """A session on the first member in the new id's order that takes it."""
        validate_repository(repository)
        upload_id = str(uuid.uuid4())
        failures = []
        for peer in self.members.write_order(placement.UPLOAD, upload_id):
            try:
                return await peer.call(peer.node.create_upload(repository, owner, upload_id))
            except (Unavailable, ResourceExhausted) as exc:
                failures.append(f"{peer.id}: {exc}")
        raise Unavailable("no member could keep an upload session: " + "; ".join(failures))

    async def _find_session(self, repository: str, upload_id: str
                            ) -> tuple[Peer, UploadInfo] | None:
        """The member keeping a session: the first in its id's order, unless that one was
        full or down when the session began."""
        order = self.members.write_order(placement.UPLOAD, upload_id)
        for peer in order[:self._metadata_reads()]:
            try:
                info = await peer.call(peer.node.get_upload(repository, upload_id))
            except Unavailable:
                continue
            if info is not None:
                return peer, info
        return None

    async def _session(self, repository: str, upload_id: str) -> Peer:
        found = await self._find_session(repository, upload_id)
        if found is None:
            raise NotFound(f"upload {upload_id} is unknown")
        return found[0]

    async def get_upload(self, repository: str, upload_id: str) -> UploadInfo | None:
        found = await self._find_session(repository, upload_id)
        return None if found is None else found[1]

    async def append_upload(self, repository: str, upload_id: str, offset: int,
                            part: Recipe) -> UploadInfo:
        peer = await self._session(repository, upload_id)
        await self.chunks.check_stored(list(part.entries()))
        return await peer.call(peer.node.append_upload(repository, upload_id, offset, part))

    async def _session_recipe(self, repository: str, upload_id: str) -> Recipe:
        peer = await self._session(repository, upload_id)
        return await peer.call(peer.node.upload_recipe(repository, upload_id))

    async def read_upload(self, repository: str, upload_id: str
                          ) -> AsyncIterator[bytes | memoryview]:
        recipe = await self._session_recipe(repository, upload_id)
        async for piece in self._read_recipe(recipe, 0, None):
            yield piece

    async def finish_upload(self, repository: str, upload_id: str, digest: str,
                            expected_size: int | None = None) -> BlobInfo:
        validate_digest(digest)
        recipe = await self._session_recipe(repository, upload_id)
        if expected_size is not None and recipe.size != expected_size:
            raise FailedPrecondition(
                f"upload {upload_id} has {recipe.size} bytes, not {expected_size}")
        if not recipe and digest not in EMPTY_DIGESTS:
            raise InvalidArgument(f"an empty upload cannot be {digest}")
        # Each part's chunks were checked when it was appended: no second look-up of every
        # chunk of the blob.
        info = await self._record_blob(digest, recipe)
        stamp = self.clock.now()
        await self._replicate(placement.REPOSITORY, repository,
                              lambda p: p.node.link_blob(repository, digest, info, stamp))
        await self.cancel_upload(repository, upload_id)
        return info

    async def cancel_upload(self, repository: str, upload_id: str) -> bool:
        found = await self._find_session(repository, upload_id)
        if found is None:
            return False
        peer = found[0]
        return await peer.call(peer.node.cancel_upload(repository, upload_id))


async def _or_none(found: Awaitable[list[T]]) -> list[T] | None:
    return (await found) or None



async def _nonzero(found: Awaitable[int]) -> int | None:
    return (await found) or None
