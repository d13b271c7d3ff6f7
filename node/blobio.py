"""Streaming a byte stream into a node: cut into chunks, send only the chunks the node
lacks, then record them in an upload session.

This is the write path every pusher shares (the gateway for an HTTP upload, the CLI, the
benchmarks), whichever `NodeAPI` is behind it. CPU work (chunking, hashing, compression)
runs in a worker thread a few MiB at a time; every queue is bounded, so memory stays flat
whatever the size of the stream.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Sequence

from node.api import Codec, NodeAPI, PutResult, StoredChunk, UploadInfo
from node.chunking import StreamChunker, chunk_id
from node.codec import CompressionProbe
from node.digests import hasher_for
from node.errors import InvalidArgument, NotFound, OutOfRange
from node.grouping import by_size
from node.recipe import Recipe

STEP = 4 << 20              # bytes handed to the chunking thread at once
PART = 64 << 20             # bytes per appended recipe part: the resume granularity
MESSAGE = 1 << 20           # chunk bytes per put message (~1 MiB gRPC messages)
QUEUE_DEPTH = 8             # messages in flight to the node


class _ChunkPipe:
    """Turns raw bytes into chunks named by their ids, off the event loop. They stay raw:
    only the chunks the node turns out to lack are compressed (`_PartWriter`), so a layer
    that mostly dedups costs hashing, not zstd."""

    def __init__(self, digester: hashlib._Hash | None) -> None:
        self._chunker = StreamChunker()
        self._digester = digester

    def _encode(self, pieces: list[bytes] | None) -> list[StoredChunk]:
        raws = self._chunker.finish() if pieces is None else self._chunker.feed(*pieces)
        return [StoredChunk(chunk_id(raw), Codec.RAW, len(raw), raw) for raw in raws]

    def _digest(self, pieces: list[bytes]) -> None:
        assert self._digester is not None
        for piece in pieces:
            self._digester.update(piece)

    async def feed(self, pieces: list[bytes]) -> list[StoredChunk]:
        if self._digester is None:
            return await asyncio.to_thread(self._encode, pieces)
        # hashlib releases the GIL: the blob's digest runs on the other core meanwhile.
        _, chunks = await asyncio.gather(asyncio.to_thread(self._digest, pieces),
                                         asyncio.to_thread(self._encode, pieces))
        return chunks

    async def finish(self) -> list[StoredChunk]:
        return await asyncio.to_thread(self._encode, None)


class _PartWriter:
    """Sends one part's missing chunks to the node as a single put stream."""

    def __init__(self, api: NodeAPI, probe: CompressionProbe) -> None:
        self._api = api
        self._probe = probe
        self._queue: asyncio.Queue[Sequence[StoredChunk] | None] = asyncio.Queue(QUEUE_DEPTH)
        self._task = asyncio.create_task(api.put_chunks(self._batches()))
        self.entries: list[tuple[bytes, int]] = []
        self.size = 0

    async def _batches(self) -> AsyncIterator[Sequence[StoredChunk]]:
        while (batch := await self._queue.get()) is not None:
            yield batch

    async def add(self, chunks: list[StoredChunk]) -> None:
        if not chunks:
            return
        self.entries.extend((c.id, c.raw_length) for c in chunks)
        self.size += sum(c.raw_length for c in chunks)
        present = await self._api.has_chunks([c.id for c in chunks])
        missing = [c for c, have in zip(chunks, present, strict=True) if not have]
        if missing:
            # In its own thread (zstd lets go of the GIL): beside the cutting of the next step.
            missing = await asyncio.to_thread(self._compress, missing)
        for batch in by_size(missing, MESSAGE):
            await self._put(batch)

    def _compress(self, chunks: list[StoredChunk]) -> list[StoredChunk]:
        return [self._probe.compress(c) for c in chunks]

    async def _put(self, batch: list[StoredChunk]) -> None:
        # If the node failed, its error surfaces here instead of blocking on a full queue.
        put = asyncio.ensure_future(self._queue.put(batch))
        done, _ = await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if put not in done:
            put.cancel()
            await self._task  # raises the node's error
            raise RuntimeError("chunk writer ended early")

    async def close(self) -> PutResult:
        if not self._task.done():
            await self._queue.put(None)
        return await self._task

    def abort(self) -> None:
        self._task.cancel()


async def append_stream(api: NodeAPI, repository: str, upload_id: str, offset: int,
                        body: AsyncIterable[bytes],
                        digester: hashlib._Hash | None = None) -> UploadInfo:
    """Append all of `body` to the upload session at `offset` and return the session.

    OutOfRange when `offset` is not the session's size, before any byte is read. Parts are
    appended every PART bytes, so if `body` fails midway the session keeps every whole
    part already appended; `digester`, fed every byte read, is then ahead of the session
    and must be discarded by the caller.
    """
    found = await api.get_upload(repository, upload_id)
    if found is None:
        raise NotFound(f"upload {upload_id} is unknown")
    session = found
    if session.size != offset:
        raise OutOfRange(f"upload {upload_id} has {session.size} bytes, not {offset}")
    pipe = _ChunkPipe(digester)
    # Three stages overlap: this task reads the body, a worker thread cuts and hashes the
    # previous STEP, and `store` sends the step before that to the node, rotating parts.
    # Each hand-over is bounded, so at most a few STEPs are in memory.
    encoded: asyncio.Queue[list[StoredChunk] | None] = asyncio.Queue(2)
    storing = asyncio.create_task(_store(api, session, encoded))
    feeding: asyncio.Task[list[StoredChunk]] | None = None
    pending: list[bytes] = []
    pending_size = 0
    try:
        async for data in body:
            pending.append(data)
            pending_size += len(data)
            if pending_size < STEP:
                continue
            if feeding is not None:
                await _hand_over(encoded, await feeding, storing)
            feeding = asyncio.create_task(pipe.feed(pending))
            pending, pending_size = [], 0
        if feeding is not None:
            await _hand_over(encoded, await feeding, storing)
        feeding = None
        if pending:
            await _hand_over(encoded, await pipe.feed(pending), storing)
        await _hand_over(encoded, await pipe.finish(), storing)
        await _hand_over(encoded, None, storing)
        return await storing
    except BaseException:
        if feeding is not None:
            feeding.cancel()
        storing.cancel()
        raise


async def _hand_over(queue: asyncio.Queue[list[StoredChunk] | None],
                     item: list[StoredChunk] | None, consumer: asyncio.Task[UploadInfo]) -> None:
    """Queue `item` for `consumer`, or raise the consumer's error if it died meanwhile."""
    put = asyncio.ensure_future(queue.put(item))
    done, _ = await asyncio.wait({put, consumer}, return_when=asyncio.FIRST_COMPLETED)
    if put not in done:
        put.cancel()
        await consumer  # raises its error
        raise RuntimeError("chunk storing ended early")


async def _store(api: NodeAPI, session: UploadInfo,
                 encoded: asyncio.Queue[list[StoredChunk] | None]) -> UploadInfo:
    """Send chunks to the node and append them in parts of about PART bytes. The previous
    part commits (fsync, index) while the next one is sent; parts are appended strictly
    in order, so at most one commit is outstanding."""
    probe = CompressionProbe()  # one per stream: it learns whether the stream compresses
    part = _PartWriter(api, probe)
    committing: asyncio.Task[UploadInfo] | None = None

    def rotate(finished: _PartWriter) -> None:
        nonlocal committing
        previous = committing

        async def commit() -> UploadInfo:
            base = await previous if previous is not None else session
            return await _append(api, base, finished)

        committing = asyncio.create_task(commit())

    try:
        while (chunks := await encoded.get()) is not None:
            await part.add(chunks)
            if part.size >= PART:
                rotate(part)
                part = _PartWriter(api, probe)
        rotate(part)
        assert committing is not None
        return await committing
    except BaseException:
        part.abort()
        if committing is not None:
            committing.cancel()
        raise


async def _append(api: NodeAPI, session: UploadInfo, part: _PartWriter) -> UploadInfo:
    await part.close()
    if not part.entries:
        return session
    return await api.append_upload(session.repository, session.id, session.size,
                                   Recipe.from_entries(part.entries))


async def write_blob(api: NodeAPI, repository: str, digest: str,
                     body: AsyncIterable[bytes]) -> UploadInfo:
    """Convenience for tools and tests: push `body` as blob `digest` in one session,
    verifying the digest; nothing is committed when it differs."""
    digester = hasher_for(digest)
    upload = await api.create_upload(repository)
    try:
        upload = await append_stream(api, repository, upload.id, 0, body, digester)
        actual = f"{digest.partition(':')[0]}:{digester.hexdigest()}"
        if actual != digest:
            raise InvalidArgument(f"content is {actual}, not {digest}")
        await api.finish_upload(repository, upload.id, digest)
    except BaseException:
        await api.cancel_upload(repository, upload.id)
        raise
    return upload
