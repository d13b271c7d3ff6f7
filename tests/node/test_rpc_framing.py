"""The hand-framed bulk reads and puts: byte for byte what protobuf would send and accept, so
a client built from the generated classes reads and writes a node's streams unchanged."""

from __future__ import annotations

import os

import grpc
import pytest
from google.protobuf.message import DecodeError
from nodetest import NodeProcess, chunk_pb, encode, one_batch, pieces, recipe_of, sha256

from node.api import Codec, StoredChunk
from node.blobio import write_blob
from node.errors import InvalidArgument
from node.rpc.client import RemoteNode
from node.rpc.framing import (
    decode_chunks,
    decode_data,
    decode_fetch,
    decode_put,
    encode_chunks,
    encode_data,
)
from shoal.v1 import (
    blobs_pb2,
    blobs_pb2_grpc,
    chunks_pb2,
    chunks_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    swarm_pb2,
)

# Around every varint width change, and the sizes a read actually sends.
SIZES = [0, 1, 127, 128, 129, 16_383, 16_384, 2_097_151, 2_097_152, 1 << 20, (1 << 20) + 17]


@pytest.mark.parametrize("size", SIZES)
def test_encoding_is_protobufs(size: int) -> None:
    data = os.urandom(size)
    framed = encode_data(data)
    assert framed == blobs_pb2.ReadBlobResponse(data=data).SerializeToString()
    assert encode_data(memoryview(data)) == framed
    assert blobs_pb2.ReadBlobResponse.FromString(framed).data == data
    assert bytes(decode_data(framed)) == data


def test_decoding_falls_back_to_protobuf_for_other_encodings() -> None:
    data = os.urandom(300)
    # The same field twice (protobuf keeps the last), and an unknown field after it.
    twice = encode_data(b"old") + encode_data(data)
    assert bytes(decode_data(twice)) == data
    unknown = encode_data(data) + bytes([0x10, 0x05])  # field 2, varint 5
    assert bytes(decode_data(unknown)) == data


def test_a_truncated_message_is_an_error_not_short_data() -> None:
    framed = encode_data(os.urandom(1000))
    with pytest.raises(DecodeError):
        decode_data(framed[:-1])


def some_chunks() -> list[StoredChunk]:
    """Chunks around the varint widths of their fields, both codecs, a view among them."""
    out = []
    for i, size in enumerate([1, 127, 128, 16_383, 16_384, 70_000]):
        data = os.urandom(size)
        out.append(StoredChunk(os.urandom(32), Codec(i % 2), size * 3 + i, data))
    big = os.urandom(200_000)
    out.append(StoredChunk(os.urandom(32), Codec.RAW, 150_000, memoryview(big)[50_000:]))
    return out


@pytest.mark.parametrize("last", [False, True])
def test_put_encoding_is_protobufs(last: bool) -> None:
    chunks = some_chunks()
    framed = encode_chunks(chunks, last=last)
    assert framed == chunks_pb2.PutChunksRequest(
        chunks=[chunk_pb(c) for c in chunks], last=last).SerializeToString()
    got, got_last = decode_put(framed)
    assert got_last is last
    assert [(c.id, c.codec, c.raw_length, bytes(c.data)) for c in got] == \
        [(c.id, c.codec, c.raw_length, bytes(c.data)) for c in chunks]
    assert all(isinstance(c.data, memoryview) for c in got)  # views, not copies
    assert encode_chunks([]) == b"" and decode_put(b"") == ([], False)


def test_put_decoding_takes_what_any_protobuf_encoder_may_send() -> None:
    chunk = some_chunks()[2]
    # A chunk's fields in reverse order, an explicit RAW codec, a field repeated (the last
    # one counts), and fields this version does not know, of every wire type.
    unknown = bytes([0x28, 0x96, 0x01,  # field 5, varint
                     0x31]) + bytes(8) + bytes([0x3D]) + bytes(4) + bytes([0x42, 0x02, 1, 2])
    body = (b"\x22" + bytes([len(chunk.data) | 0x80, len(chunk.data) >> 7]) + chunk.data
            + b"\x18\x01\x18" + bytes([chunk.raw_length & 0x7F | 0x80, chunk.raw_length >> 7])
            + b"\x10\x00" + unknown + b"\x0a\x20" + chunk.id)
    message = (b"\x10\x01" + b"\x0a" + bytes([len(body) & 0x7F | 0x80, len(body) >> 7]) + body
               + unknown + b"\x10\x00")
    reference = chunks_pb2.PutChunksRequest.FromString(message)
    got, last = decode_put(message)
    assert last is reference.last is False
    assert [(c.id, int(c.codec), c.raw_length, bytes(c.data)) for c in got] == \
        [(c.id, c.codec, c.raw_length, c.data) for c in reference.chunks]


def test_get_and_fetch_answers_are_framed_and_read_the_same_way() -> None:
    chunks = some_chunks()
    as_pb = [chunk_pb(c) for c in chunks]
    framed = encode_chunks(chunks)
    assert framed == chunks_pb2.GetChunksResponse(chunks=as_pb).SerializeToString()
    assert framed == swarm_pb2.FetchResponse(chunks=as_pb).SerializeToString()
    for got in (decode_chunks(framed), decode_fetch(framed)):
        assert isinstance(got, list)
        assert [(c.id, c.codec, c.raw_length, bytes(c.data)) for c in got] == \
            [(c.id, c.codec, c.raw_length, bytes(c.data)) for c in chunks]
    busy = swarm_pb2.Busy(chunk_count=9, retry_after_ms=250, holders=[
        swarm_pb2.Holder(address="10.0.0.2:7500", held=b"\xff\x01")])
    assert decode_fetch(swarm_pb2.FetchResponse(busy=busy).SerializeToString()) == busy
    assert decode_fetch(swarm_pb2.FetchResponse(busy=swarm_pb2.Busy()).SerializeToString()
                        ) == swarm_pb2.Busy()  # an empty busy message is still busy


@pytest.mark.parametrize("cut", [1, 2, 5, 40, 100])
def test_a_truncated_or_garbled_put_is_refused(cut: int) -> None:
    framed = encode_chunks(some_chunks()[:3])
    with pytest.raises(InvalidArgument):
        decode_put(framed[:-cut])
    with pytest.raises(InvalidArgument):
        decode_put(b"\x0b" + framed)  # wire type 3 (a group): never sent by proto3
    with pytest.raises(InvalidArgument):
        decode_put(b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01")
    unknown_codec = encode_chunks([StoredChunk(bytes(32), Codec.ZSTD, 1, b"x")]).replace(
        b"\x10\x01", b"\x10\x07", 1)
    with pytest.raises(InvalidArgument, match="unknown codec 7"):
        decode_put(unknown_codec)


async def test_generated_stubs_read_a_nodes_framed_streams(node_process: NodeProcess) -> None:
    data = os.urandom(3 << 20)
    node = RemoteNode(node_process.target)
    channel = grpc.aio.insecure_channel(node_process.target)
    try:
        await write_blob(node, "framing/read", sha256(data), pieces(data))
        got = b"".join([m.data async for m in blobs_pb2_grpc.BlobsStub(channel).Read(
            blobs_pb2.ReadBlobRequest(digest=sha256(data), offset=5, length=len(data) - 9),
            timeout=30)])
        assert got == data[5:-4]

        part = encode(data[:100_000])
        await node.put_chunks(one_batch(part))
        upload = await node.create_upload("framing/upload")
        await node.append_upload("framing/upload", upload.id, 0, recipe_of(part))
        stub = registry_pb2_grpc.RegistryStub(channel)
        got = b"".join([m.data async for m in stub.ReadUpload(
            registry_pb2.UploadRef(repository="framing/upload", id=upload.id), timeout=30)])
        assert got == data[:100_000]
    finally:
        await channel.close()
        await node.close()


async def test_generated_stubs_put_chunks_into_a_node(node_process: NodeProcess) -> None:
    chunks = encode(os.urandom(300_000))
    channel = grpc.aio.insecure_channel(node_process.target)
    node = RemoteNode(node_process.target)
    try:
        async def requests() -> object:
            yield chunks_pb2.PutChunksRequest(chunks=[chunk_pb(c) for c in chunks])
            yield chunks_pb2.PutChunksRequest(last=True)

        reply = await chunks_pb2_grpc.ChunkStoreStub(channel).Put(requests(), timeout=30)
        assert reply.stored == len({c.id for c in chunks})
        got = [c async for c in node.get_chunks([c.id for c in chunks])]
        assert [bytes(c.data) for c in got] == [bytes(c.data) for c in chunks]
    finally:
        await channel.close()
        await node.close()
