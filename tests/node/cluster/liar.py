"""A cluster member that lies: it claims every chunk, accepts every put, and answers every
read with the right ids over the wrong bytes. Run as `python liar.py PORT COUNT_FILE`;
it counts the chunks it served in COUNT_FILE, so a test can tell it was asked."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shoal.v1 import chunks_pb2, chunks_pb2_grpc


class LyingChunkStore(chunks_pb2_grpc.ChunkStoreServicer):
    def __init__(self, count_file: Path) -> None:
        self.count_file = count_file
        self.served = 0

    async def Has(self, request: chunks_pb2.HasChunksRequest, context: Any
                  ) -> chunks_pb2.HasChunksResponse:
        count = len(request.ids) // 32
        lengths = b"".join((16384).to_bytes(4, "big") for _ in range(count))
        return chunks_pb2.HasChunksResponse(present=b"\xff" * ((count + 7) // 8),
                                            raw_lengths=lengths if request.lengths else b"")

    async def Put(self, request_iterator: AsyncIterator[chunks_pb2.PutChunksRequest],
                  context: Any) -> chunks_pb2.PutChunksResponse:
        stored = 0
        async for message in request_iterator:
            stored += len(message.chunks)
        return chunks_pb2.PutChunksResponse(stored=stored)

    async def Get(self, request: chunks_pb2.GetChunksRequest, context: Any
                  ) -> AsyncIterator[chunks_pb2.GetChunksResponse]:
        ids = [request.ids[i:i + 32] for i in range(0, len(request.ids), 32)]
        for cid in ids:
            self.served += 1
            self.count_file.write_text(str(self.served))
            yield chunks_pb2.GetChunksResponse(chunks=[chunks_pb2.Chunk(
                id=cid, codec=chunks_pb2.CODEC_RAW, raw_length=5, data=b"wrong")])


async def main(port: int, count_file: Path) -> None:
    server = grpc.aio.server()
    chunks_pb2_grpc.add_ChunkStoreServicer_to_server(LyingChunkStore(count_file), server)
    health_servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), Path(sys.argv[2])))
