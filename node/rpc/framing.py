"""Bulk messages framed by hand: the streams that carry ~1 MiB of chunk bytes per message.

Reads. ReadBlobResponse (Blobs.Read, Registry.ReadUpload) is a single bytes field, and each
message carries about 1 MiB. Through the generated classes every byte is copied three times
on the sending side (into the message, out of it when serialized, and from a view into
bytes before that) and twice on the receiving side, all on the event loop's thread, which
is also the one thread running gRPC's own machinery. Framing the field here costs one copy
on the way out and none on the way in (the piece handed on is a view of the received
message). Measured on one stream between two processes (benchmarks/node_throughput.py):
node reads went from 338-340 MB/s to 390-487 MB/s.

Chunks. PutChunksRequest (ChunkStore.Put), GetChunksResponse (ChunkStore.Get) and the
swarm's FetchResponse (Peer.Fetch) carry ~50 chunks per MiB. The generated classes
build a message object per chunk on both sides and copy each chunk's bytes into the message
and out again; here a request is one join of small headers and the chunks' own bytes, and a
received one is parsed into chunks whose data are views of the message.

The bytes on the wire are exactly protobuf's encoding of the messages (tests check both
directions), so any other gRPC client reads and writes these streams with the generated
classes; the parser takes whatever a protobuf encoder may send (fields in any order,
repeated, or unknown to this version).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any

import grpc

from node.api import Codec, StoredChunk
from node.errors import InvalidArgument
from shoal.v1 import blobs_pb2, swarm_pb2

_DATA_TAG = 0x0A  # field 1, wire type 2 (length-delimited)
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5  # protobuf wire types
_CODECS = {int(c): c for c in Codec}  # a dict look-up: Codec(n) costs a microsecond a chunk


_SMALL = [bytes([i]) for i in range(0x80)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_data(data: bytes | memoryview) -> bytes:
    """The serialized ReadBlobResponse(data=data)."""
    if len(data) == 0:
        return b""  # proto3 leaves a default field out
    return b"".join((_SMALL[_DATA_TAG], _varint(len(data)), data))


def encode_chunks(chunks: Sequence[StoredChunk], last: bool = False) -> bytes:
    """The serialized PutChunksRequest(chunks=chunks, last=last); without `last`, also
    GetChunksResponse(chunks=chunks) and swarm FetchResponse(chunks=chunks), which hold
    their chunks in the same field 1."""
    parts: list[bytes | memoryview] = []
    for c in chunks:
        # Chunk: id = 1, codec = 2 (left out when RAW, as proto3 does), raw_length = 3, data = 4
        head = b"".join((b"\x0a\x20", c.id, b"\x10" + _varint(c.codec) if c.codec else b"",
                         b"\x18", _varint(c.raw_length), b"\x22", _varint(len(c.data))))
        parts += (b"\x0a", _varint(len(head) + len(c.data)), head, c.data)
    if last:
        parts.append(b"\x10\x01")
    return b"".join(parts)


def _read_varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    if pos < end and buf[pos] < 0x80:  # one byte: every key, and most values
        return buf[pos], pos + 1
    n = shift = 0
    while pos < end and shift < 64:
        byte = buf[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return n, pos
        shift += 7
    raise InvalidArgument("malformed message: a varint runs past its end")


def _skip(buf: bytes, wire: int, pos: int, end: int) -> int:
    """Past a field of `wire` type (one this version does not know) starting at `pos`."""
    if wire == _VARINT:
        return _read_varint(buf, pos, end)[1]
    if wire == _LEN:
        n, pos = _read_varint(buf, pos, end)
        pos += n
    elif wire in (_I64, _I32):
        pos += 8 if wire == _I64 else 4
    else:
        raise InvalidArgument(f"malformed message: wire type {wire}")
    if pos > end:
        raise InvalidArgument("malformed message: a field runs past its end")
    return pos


def _chunk(buf: bytes, view: memoryview, pos: int, end: int) -> StoredChunk:
    cid: bytes = b""
    codec = raw_length = 0
    data: bytes | memoryview = b""
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if wire == _LEN and field in (1, 4):
            n, pos = _read_varint(buf, pos, end)
            if pos + n > end:
                raise InvalidArgument("malformed chunk: a field runs past its end")
            if field == 1:
                cid = buf[pos:pos + n]
            else:
                data = view[pos:pos + n]
            pos += n
        elif wire == _VARINT and field in (2, 3):
            value, pos = _read_varint(buf, pos, end)
            if field == 2:
                codec = value
            else:
                raw_length = value & 0xFFFFFFFF  # uint32, as protobuf reads it
        else:
            pos = _skip(buf, wire, pos, end)
    known = _CODECS.get(codec)
    if known is None:
        raise InvalidArgument(f"unknown codec {codec}")
    return StoredChunk(cid, known, raw_length, data)


def decode_put(buf: bytes) -> tuple[list[StoredChunk], bool]:
    """The chunks and `last` flag of a serialized PutChunksRequest; each chunk's data is a
    view of `buf`. InvalidArgument when it is not a well-formed message."""
    chunks, last, _ = _scan(buf)
    return chunks, last


def decode_chunks(buf: bytes) -> list[StoredChunk]:
    """The chunks of a serialized GetChunksResponse, as views of `buf`."""
    return _scan(buf)[0]


def decode_fetch(buf: bytes) -> list[StoredChunk] | swarm_pb2.Busy:
    """A serialized swarm FetchResponse: its chunks (views of `buf`), or its busy answer."""
    chunks, _, other = _scan(buf)
    if other:
        return swarm_pb2.FetchResponse.FromString(buf).busy
    return chunks


def _scan(buf: bytes) -> tuple[list[StoredChunk], bool, bool]:
    """Field 1's chunks, field 2 as a flag, and whether field 2 came as a message."""
    view = memoryview(buf)
    chunks: list[StoredChunk] = []
    last = other = False
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos, end)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == _LEN:
            n, pos = _read_varint(buf, pos, end)
            if pos + n > end:
                raise InvalidArgument("malformed message: a chunk runs past its end")
            chunks.append(_chunk(buf, view, pos, pos + n))
            pos += n
        elif field == 2 and wire == _VARINT:
            value, pos = _read_varint(buf, pos, end)
            last = value != 0
        else:
            other = other or field == 2
            pos = _skip(buf, wire, pos, end)
    return chunks, last, other


def decode_data(raw: bytes) -> bytes | memoryview:
    """The data of a serialized ReadBlobResponse, as a view of `raw` when it is the plain
    encoding above; anything else (fields a later version adds) goes through protobuf."""
    if not raw:
        return b""
    if raw[0] == _DATA_TAG:
        with suppress(InvalidArgument):  # not the plain encoding: protobuf decides below
            n, pos = _read_varint(raw, 1, len(raw))
            if pos + n == len(raw):
                return memoryview(raw)[pos:]
    data: bytes = blobs_pb2.ReadBlobResponse.FromString(raw).data
    return data


class _Capture:
    """Stands in for the server while a generated add_*Servicer_to_server registers, so
    one method's handler can be swapped before the real server sees them."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the registered handlers below carry the same methods

    def add_registered_method_handlers(self, service: str, handlers: Any) -> None:
        self.service = service
        self.handlers = dict(handlers)


def add_framed(server: grpc.aio.Server, add_to_server: Callable[[Any, Any], None],
               servicer: Any, reads: tuple[str, ...] = (), puts: tuple[str, ...] = ()) -> None:
    """Register `servicer` as the generated `add_to_server` would, except that `reads`
    (server-streaming methods) yield bytes already framed (`encode_data`,
    `encode_chunks`), sent as they are, and `puts` (client-streaming PutChunksRequest methods)
    receive each message's bytes as they came, for `decode_put`."""
    capture = _Capture()
    add_to_server(servicer, capture)
    for name in reads:
        handler = capture.handlers[name]
        capture.handlers[name] = grpc.unary_stream_rpc_method_handler(
            handler.unary_stream, request_deserializer=handler.request_deserializer)
    for name in puts:
        handler = capture.handlers[name]
        capture.handlers[name] = grpc.stream_unary_rpc_method_handler(
            handler.stream_unary, response_serializer=handler.response_serializer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(capture.service, capture.handlers),))
    # Not in grpc's type stubs yet; registered methods skip the generic lookup per call.
    server.add_registered_method_handlers(  # type: ignore[attr-defined]
        capture.service, capture.handlers)
