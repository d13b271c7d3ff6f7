"""The transport's own ceiling: a trivial gRPC service streaming 1 MiB messages from
another process, with no storage behind it. Node figures are read against this.

    python -m benchmarks.grpc_ceiling            # prints MB/s
    python -m benchmarks.grpc_ceiling --serve F  # (internal) serve, writing the port to F
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from benchmarks.common import mb_per_s, process
from node.rpc.options import GRPC_OPTIONS
from shoal.memory import pin_allocator
from shoal.v1 import blobs_pb2, blobs_pb2_grpc

MESSAGES = 512


class _Source(blobs_pb2_grpc.BlobsServicer):
    payload = os.urandom(1 << 20)

    async def Read(self, request: Any, context: Any) -> AsyncIterator[Any]:
        for _ in range(MESSAGES):
            yield blobs_pb2.ReadBlobResponse(data=self.payload)


async def _serve(port_file: Path) -> None:
    server = grpc.aio.server(options=GRPC_OPTIONS)
    blobs_pb2_grpc.add_BlobsServicer_to_server(_Source(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    await asyncio.to_thread(port_file.write_text, f"{port}\n")
    await server.wait_for_termination()


async def measure(target: str, rounds: int = 3) -> float:
    channel = grpc.aio.insecure_channel(target, options=GRPC_OPTIONS)
    stub = blobs_pb2_grpc.BlobsStub(channel)
    rates = []
    try:
        for _ in range(rounds):
            start = time.perf_counter()
            got = 0
            async for message in stub.Read(blobs_pb2.ReadBlobRequest(), timeout=120):
                got += len(message.data)
            rates.append(mb_per_s(got, time.perf_counter() - start))
    finally:
        await channel.close(None)
    return sorted(rates)[len(rates) // 2]


def ceiling() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        cmd = [sys.executable, "-m", "benchmarks.grpc_ceiling", "--serve", str(port_file)]
        with process(cmd, Path(tmp) / "log", port_file):
            return asyncio.run(measure(f"127.0.0.1:{port_file.read_text().strip()}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    pin_allocator()  # both ends as in a shoal process
    if args.serve:
        import uvloop

        uvloop.run(_serve(args.serve))
        return
    print(f"gRPC stream of 1 MiB messages between two processes: {ceiling():.0f} MB/s")


if __name__ == "__main__":
    main()
