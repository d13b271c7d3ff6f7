"""An adversary for the swarm tests: a Peer service that claims every chunk of a blob and
answers every Fetch with bytes of the right length that are not the chunk's.

    python evil_peer.py ORIGIN DIGEST PORT_FILE

It announces itself to the origin as holding the whole blob (and keeps its lease), so
edges are sent to it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from node.rpc.client import RemoteNode
from node.swarm.client import SwarmClient
from node.swarm.holders import Holding
from shoal.v1 import chunks_pb2, swarm_pb2, swarm_pb2_grpc


class Liar(swarm_pb2_grpc.PeerServicer):
    def __init__(self, lengths: dict[bytes, int]) -> None:
        self.lengths = lengths

    async def Fetch(self, request: swarm_pb2.FetchRequest, context: Any
                    ) -> AsyncIterator[swarm_pb2.FetchResponse]:
        ids = [request.ids[i:i + 32] for i in range(0, len(request.ids), 32)]
        chunks = [chunks_pb2.Chunk(id=i, codec=chunks_pb2.CODEC_RAW,
                                   raw_length=self.lengths[i], data=b"\x5a" * self.lengths[i])
                  for i in ids]
        yield swarm_pb2.FetchResponse(chunks=chunks)


async def main(origin: str, digest: str, port_file: Path) -> None:
    remote = RemoteNode(origin)
    recipe = await remote.get_recipe(digest)
    await remote.close()
    server = grpc.aio.server()
    swarm_pb2_grpc.add_PeerServicer_to_server(Liar(dict(recipe.entries())), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    address = f"127.0.0.1:{port}"
    client = SwarmClient()
    everything = [Holding(digest, len(recipe), gained=(1 << len(recipe)) - 1)]
    await client.announce(origin, address, everything, full=True)
    await asyncio.to_thread(port_file.write_text, f"{port}\n")
    while True:
        await asyncio.sleep(2)
        await client.announce(origin, address, everything, full=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
