"""The hand-framed bulk reads: byte for byte what protobuf would send and accept, so a client
built from the generated classes reads a node's streams unchanged."""

from __future__ import annotations

import os

import grpc
import pytest
from google.protobuf.message import DecodeError
from nodetest import NodeProcess, encode, one_batch, pieces, recipe_of, sha256

from node.blobio import write_blob
from node.rpc.client import RemoteNode
from node.rpc.framing import decode_data, encode_data
from shoal.v1 import blobs_pb2, blobs_pb2_grpc, registry_pb2, registry_pb2_grpc

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
