"""Bad input over gRPC, against a real node process: each gets a clear status, and the
store is left as it was."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from nodetest import (
    NodeProcess,
    chunk_of_pb,
    chunk_pb,
    collect,
    encode,
    one_batch,
    sha256,
    store_blob,
    text_bytes,
)

from node.api import Codec
from node.chunking import chunk_id
from node.codec import CompressionProbe
from node.errors import InvalidArgument, NotFound, OutOfRange, ResourceExhausted
from node.rpc import convert
from node.rpc.client import RemoteNode
from node.rpc.options import MAX_MESSAGE
from shoal.v1 import (
    blobs_pb2,
    blobs_pb2_grpc,
    chunks_pb2,
    chunks_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
)

UNLIMITED = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]


def raw_channel(proc: NodeProcess) -> grpc.aio.Channel:
    """A channel without the client's own message limits, to reach the server's."""
    return grpc.aio.insecure_channel(proc.target, options=UNLIMITED)


async def status_of(call: object) -> grpc.StatusCode:
    try:
        result = await call  # type: ignore[misc]
        if hasattr(result, "__aiter__"):
            _ = [m async for m in result]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def stream_status(call: grpc.aio.UnaryStreamCall[Any, Any]) -> grpc.StatusCode:
    try:
        _ = [m async for m in call]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_unknown_ids_and_malformed_id_lists(node_process: NodeProcess) -> None:
    async with raw_channel(node_process) as channel:
        chunks = chunks_pb2_grpc.ChunkStoreStub(channel)
        blobs = blobs_pb2_grpc.BlobsStub(channel)
        registry = registry_pb2_grpc.RegistryStub(channel)
        unknown = chunk_id(uuid.uuid4().bytes)
        get = chunks.Get(chunks_pb2.GetChunksRequest(ids=unknown), timeout=10)
        assert await stream_status(get) == grpc.StatusCode.NOT_FOUND
        for bad in (b"x" * 33, b"y" * 31):
            assert await status_of(chunks.Has(chunks_pb2.HasChunksRequest(ids=bad), timeout=10)
                                   ) == grpc.StatusCode.INVALID_ARGUMENT
            get = chunks.Get(chunks_pb2.GetChunksRequest(ids=bad), timeout=10)
            assert await stream_status(get) == grpc.StatusCode.INVALID_ARGUMENT
        digest = sha256(uuid.uuid4().bytes)
        assert await status_of(blobs.Stat(blobs_pb2.StatBlobRequest(digest=digest), timeout=10)
                               ) == grpc.StatusCode.NOT_FOUND
        read = blobs.Read(blobs_pb2.ReadBlobRequest(digest=digest), timeout=10)
        assert await stream_status(read) == grpc.StatusCode.NOT_FOUND
        assert await status_of(blobs.GetRecipe(blobs_pb2.GetRecipeRequest(digest=digest),
                                               timeout=10)) == grpc.StatusCode.NOT_FOUND
        ref = registry_pb2.UploadRef(repository="r", id=str(uuid.uuid4()))
        assert await status_of(registry.GetUpload(ref, timeout=10)) == grpc.StatusCode.NOT_FOUND
        read_upload = registry.ReadUpload(ref, timeout=10)
        assert await stream_status(read_upload) == grpc.StatusCode.NOT_FOUND
        get_manifest = registry.GetManifest(
            registry_pb2.GetManifestRequest(repository="r", reference="nope"), timeout=10)
        assert await status_of(get_manifest) == grpc.StatusCode.NOT_FOUND


async def test_put_with_a_hash_mismatch_or_unknown_codec(node_process: NodeProcess) -> None:
    chunk = CompressionProbe().encode(os.urandom(3000))
    forged = dataclasses.replace(chunk, data=os.urandom(3000))
    async with raw_channel(node_process) as channel:
        stub = chunks_pb2_grpc.ChunkStoreStub(channel)

        async def send(*messages: chunks_pb2.PutChunksRequest
                       ) -> AsyncIterator[chunks_pb2.PutChunksRequest]:
            for m in messages:
                yield m
            yield chunks_pb2.PutChunksRequest(last=True)

        bad = chunks_pb2.PutChunksRequest(chunks=[chunk_pb(forged)])
        assert await status_of(stub.Put(send(bad), timeout=10)) == \
            grpc.StatusCode.INVALID_ARGUMENT
        odd = chunk_pb(chunk)
        odd.codec = 9  # type: ignore[assignment]
        assert await status_of(stub.Put(send(chunks_pb2.PutChunksRequest(chunks=[odd])),
                                        timeout=10)) == grpc.StatusCode.INVALID_ARGUMENT
        reply = await stub.Has(chunks_pb2.HasChunksRequest(ids=chunk.id), timeout=10)
        assert convert.unbitmap(reply.present, 1) == [False]


async def test_a_put_message_that_is_not_protobuf(node_process: NodeProcess) -> None:
    """Put requests are parsed by hand (node/rpc/framing.py): bytes that are no
    PutChunksRequest are refused as such, after good chunks in the same stream too."""
    good = CompressionProbe().encode(os.urandom(3000))
    good_message = chunks_pb2.PutChunksRequest(chunks=[chunk_pb(good)])
    async with raw_channel(node_process) as channel:
        put = channel.stream_unary("/shoal.v1.ChunkStore/Put", request_serializer=None,
                                   response_deserializer=chunks_pb2.PutChunksResponse.FromString)

        async def send(raw: bytes) -> AsyncIterator[bytes]:
            yield good_message.SerializeToString()
            yield raw

        for garbage in (b"\x0a\x7f" + bytes(10), b"\x0f", b"\x0a\x05\x0a\x20abc"):
            try:
                await put(send(garbage), timeout=10)
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "malformed" in (exc.details() or "")
            else:
                raise AssertionError(f"{garbage!r} was taken")
        stub = chunks_pb2_grpc.ChunkStoreStub(channel)
        reply = await stub.Has(chunks_pb2.HasChunksRequest(ids=good.id), timeout=10)
        assert convert.unbitmap(reply.present, 1) == [False]


async def test_malformed_recipe_and_digest(node_process: NodeProcess) -> None:
    async with raw_channel(node_process) as channel:
        blobs = blobs_pb2_grpc.BlobsStub(channel)
        for entries in (b"x" * 35, b"\0" * 36):  # a partial entry; an empty chunk
            request = blobs_pb2.CommitBlobRequest(digest=sha256(b"r"),
                                                  recipe=blobs_pb2.Recipe(entries=entries))
            assert await status_of(blobs.Commit(request, timeout=10)) == \
                grpc.StatusCode.INVALID_ARGUMENT
        request = blobs_pb2.CommitBlobRequest(digest="sha256:zz", recipe=blobs_pb2.Recipe())
        assert await status_of(blobs.Commit(request, timeout=10)) == \
            grpc.StatusCode.INVALID_ARGUMENT


async def test_messages_over_the_limit_are_resource_exhausted(
        node_process: NodeProcess) -> None:
    ids = b"\1" * (MAX_MESSAGE + 64)
    async with raw_channel(node_process) as channel:
        stub = chunks_pb2_grpc.ChunkStoreStub(channel)
        code = await status_of(stub.Has(chunks_pb2.HasChunksRequest(ids=ids), timeout=30))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        # The node is still fine afterwards.
        ok = await stub.Has(chunks_pb2.HasChunksRequest(ids=bytes(32)), timeout=10)
        assert convert.unbitmap(ok.present, 1) == [False]
    # RemoteNode's own limit refuses to send it, with the same error.
    remote = RemoteNode(node_process.target)
    try:
        with pytest.raises(ResourceExhausted):
            await remote.has_chunks([ids[i:i + 32] for i in range(0, len(ids) - 64, 32)])
    finally:
        await remote.close()


async def test_reads_past_the_end(node_process: NodeProcess) -> None:
    remote = RemoteNode(node_process.target)
    try:
        data = os.urandom(50_000)
        digest, _ = await store_blob(remote, data)
        with pytest.raises(OutOfRange):
            await collect(remote.read_blob(digest, len(data) + 1))
        with pytest.raises(OutOfRange):
            await collect(remote.read_blob(digest, len(data) - 1, 2))
        assert await collect(remote.read_blob(digest, len(data) - 1, 1)) == data[-1:]
    finally:
        await remote.close()
    async with raw_channel(node_process) as channel:
        blobs = blobs_pb2_grpc.BlobsStub(channel)
        read = blobs.Read(blobs_pb2.ReadBlobRequest(digest=digest, offset=1 << 40), timeout=10)
        assert await stream_status(read) == grpc.StatusCode.OUT_OF_RANGE


async def _cancelled_put(proc: NodeProcess, messages: list[chunks_pb2.PutChunksRequest]
                         ) -> None:
    """Send `messages` on a Put stream, then cancel it instead of closing it."""
    sent = asyncio.Event()

    async def requests() -> AsyncIterator[chunks_pb2.PutChunksRequest]:
        for m in messages:
            yield m
        sent.set()
        await asyncio.Event().wait()  # never half-close: the stream stays open

    async with raw_channel(proc) as channel:
        call = chunks_pb2_grpc.ChunkStoreStub(channel).Put(requests(), timeout=30)
        await asyncio.wait_for(sent.wait(), 30)
        await asyncio.sleep(0.3)  # let the node receive (and write) what was sent
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call


def _messages(size: int) -> tuple[list[chunks_pb2.PutChunksRequest], list[bytes]]:
    chunks = encode(os.urandom(size))
    messages = [chunks_pb2.PutChunksRequest(chunks=[chunk_pb(c)
                                                    for c in chunks[i:i + 60]])
                for i in range(0, len(chunks), 60)]
    return messages, [c.id for c in chunks]


@pytest.mark.parametrize("size", [2 << 20, 20 << 20], ids=["small", "over-a-put-group"])
async def test_a_cancelled_put_stream_leaves_only_verified_chunks(node_process: NodeProcess,
                                                                  size: int) -> None:
    """Nothing unverified or undurable becomes visible. Usually nothing at all does; see
    BUG-7 (tests/node/BUGS.md, test_rpc_server.py) for the race where a cancel reads as
    the end of the stream."""
    messages, ids = _messages(size)
    await _cancelled_put(node_process, messages)
    remote = RemoteNode(node_process.target)
    try:
        await asyncio.sleep(0.3)
        visible = [i for i, present in zip(ids, await remote.has_chunks(ids), strict=True)
                   if present]
        got = [c async for c in remote.get_chunks(visible)]  # verified on the way out
        assert [c.id for c in got] == visible
        # The node still takes a normal put of the same chunks afterwards.
        chunks = [chunk_of_pb(c) for m in messages[:2] for c in m.chunks]
        await remote.put_chunks(one_batch(chunks))
        assert all(await remote.has_chunks([c.id for c in chunks]))
    finally:
        await remote.close()


async def test_a_put_stream_failing_validation_leaves_the_store_as_it_was(
        node_process: NodeProcess) -> None:
    """Chunks are visible only once the whole stream is verified and durable: a bad chunk
    after more than a put group (16 MiB) of good ones still stores none of them."""
    good = encode(os.urandom(20 << 20))
    text = CompressionProbe().encode(text_bytes(8000, seed=uuid.uuid4().int))
    assert text.codec == Codec.ZSTD
    bad = dataclasses.replace(text, data=bytes(text.data[:-1]) + b"\0")
    remote = RemoteNode(node_process.target)
    try:
        with pytest.raises(InvalidArgument):
            await remote.put_chunks(one_batch(*[good[i:i + 60]
                                                for i in range(0, len(good), 60)], [bad]))
        assert not any(await remote.has_chunks([c.id for c in good] + [text.id]))
    finally:
        await remote.close()


async def test_unknown_upload_and_bad_append(node_process: NodeProcess) -> None:
    remote = RemoteNode(node_process.target)
    try:
        repo = f"bad/{uuid.uuid4().hex[:8]}"
        upload = await remote.create_upload(repo)
        async with raw_channel(node_process) as channel:
            registry = registry_pb2_grpc.RegistryStub(channel)
            append = registry_pb2.AppendUploadRequest(
                repository=repo, id=upload.id, offset=7, part=blobs_pb2.Recipe())
            assert await status_of(registry.AppendUpload(append, timeout=10)) == \
                grpc.StatusCode.OUT_OF_RANGE
            append = registry_pb2.AppendUploadRequest(
                repository=repo, id=upload.id, offset=0,
                part=blobs_pb2.Recipe(entries=b"z" * 40))
            assert await status_of(registry.AppendUpload(append, timeout=10)) == \
                grpc.StatusCode.INVALID_ARGUMENT
            finish = registry_pb2.FinishUploadRequest(repository=repo, id="nope",
                                                      digest=sha256(b""))
            assert await status_of(registry.FinishUpload(finish, timeout=10)) == \
                grpc.StatusCode.NOT_FOUND
        with pytest.raises(NotFound):
            await remote.finish_upload(repo, str(uuid.uuid4()), sha256(b""))
    finally:
        await remote.close()


async def test_an_empty_read_still_checks_the_blob_and_range(node_process: NodeProcess
                                                             ) -> None:
    """LocalNode raises NotFound / OutOfRange for these; RemoteNode returns nothing."""
    remote = RemoteNode(node_process.target)
    try:
        digest, recipe = await store_blob(remote, os.urandom(5000))
        assert await collect(remote.read_blob(digest, 10, 0)) == b""
        for blob, offset, expected in [(sha256(uuid.uuid4().bytes), 0, NotFound),
                                       (digest, recipe.size + 1, OutOfRange)]:
            try:
                await collect(remote.read_blob(blob, offset, 0))
            except expected:
                continue
            raise AssertionError(f"read_blob({blob}, {offset}, 0) did not raise {expected}")
    finally:
        await remote.close()
