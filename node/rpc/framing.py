"""Bulk reads framed by hand: the ReadBlobResponse stream of Blobs.Read and Registry.ReadUpload.

ReadBlobResponse is a single bytes field, and each message carries about 1 MiB. Through
the generated classes every byte is copied three times on the sending side (into the
message, out of it when serialized, and from a view into bytes before that) and twice on
the receiving side, all on the event loop's thread, which is also the one thread running
gRPC's own machinery. Framing the field here costs one copy on the way out and none on the
way in (the piece handed on is a view of the received message). Measured on one stream
between two processes (benchmarks/node_throughput.py): node reads went from 338-340 MB/s
to 390-487 MB/s.

The bytes on the wire are exactly protobuf's encoding of the message (tests check both
directions), so any other gRPC client reads these streams with the generated classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from shoal.v1 import blobs_pb2

_DATA_TAG = 0x0A  # field 1, wire type 2 (length-delimited)


def encode_data(data: bytes | memoryview) -> bytes:
    """The serialized ReadBlobResponse(data=data)."""
    n = len(data)
    if n == 0:
        return b""  # proto3 leaves a default field out
    header = bytearray([_DATA_TAG])
    while n >= 0x80:
        header.append((n & 0x7F) | 0x80)
        n >>= 7
    header.append(n)
    return b"".join((header, data))


def decode_data(raw: bytes) -> bytes | memoryview:
    """The data of a serialized ReadBlobResponse, as a view of `raw` when it is the plain
    encoding above; anything else (fields a later version adds) goes through protobuf."""
    if not raw:
        return b""
    if raw[0] == _DATA_TAG:
        n = shift = 0
        pos = 1
        while pos < len(raw) and pos <= 10:
            byte = raw[pos]
            pos += 1
            n |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if pos + n == len(raw):
                    return memoryview(raw)[pos:]
                break
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


def add_with_framed_reads(server: grpc.aio.Server, add_to_server: Callable[[Any, Any], None],
                          servicer: Any, methods: tuple[str, ...]) -> None:
    """Register `servicer` as the generated `add_to_server` would, except that `methods`
    (server-streaming ReadBlobResponse methods) yield bytes already framed by
    `encode_data`, sent as they are."""
    capture = _Capture()
    add_to_server(servicer, capture)
    for name in methods:
        handler = capture.handlers[name]
        capture.handlers[name] = grpc.unary_stream_rpc_method_handler(
            handler.unary_stream, request_deserializer=handler.request_deserializer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(capture.service, capture.handlers),))
    # Not in grpc's type stubs yet; registered methods skip the generic lookup per call.
    server.add_registered_method_handlers(  # type: ignore[attr-defined]
        capture.service, capture.handlers)
