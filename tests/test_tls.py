"""TLS on the gateway and mutual TLS between gateways and nodes, with a throwaway CA: the
right certificates connect, a client without one is refused."""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from support import SHOAL, free_port, make_pki, running, wait_until

from node.errors import Unavailable
from node.rpc.client import RemoteNode
from node.rpc.tls import TlsFiles


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    return make_pki(tmp_path)


def test_the_gateway_serves_https(pki: dict[str, Path], tmp_path: Path) -> None:
    port = free_port()
    trusted = ssl.create_default_context(cafile=str(pki["ca"]))

    def https_ok() -> bool:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/", context=trusted,
                                    timeout=5) as r:
            return r.status == 200

    with running([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen",
                         f"127.0.0.1:{port}", "--tls-cert", str(pki["server_cert"]),
                         "--tls-key", str(pki["server_key"])]) as proc:
        wait_until(https_ok, "HTTPS answers", proc)
        # A client that does not trust the CA, and one that speaks plain HTTP, get nowhere.
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"https://127.0.0.1:{port}/v2/", timeout=5,
                                   context=ssl.create_default_context())
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=5)


def test_a_node_with_mutual_tls_refuses_clients_without_a_certificate(
        pki: dict[str, Path], tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    argv = [*SHOAL, "node", "--data", str(tmp_path / "data"), "--listen", "127.0.0.1:0",
            "--port-file", str(port_file), "--tls-cert", str(pki["server_cert"]),
            "--tls-key", str(pki["server_key"]), "--tls-ca", str(pki["ca"])]
    with running(argv) as proc:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), "node", proc)
        target = f"127.0.0.1:{port_file.read_text().strip()}"
        client = TlsFiles(pki["client_cert"], pki["client_key"], pki["ca"])

        async def probe() -> None:
            good = RemoteNode(target, tls=client, unary_deadline=10)
            try:
                assert await good.has_chunks([bytes(32)]) == [False]
            finally:
                await good.close()
            plain = RemoteNode(target, unary_deadline=5)
            try:
                with pytest.raises(Unavailable):
                    await plain.has_chunks([bytes(32)])
            finally:
                await plain.close()
            # TLS that trusts the node, but presents no certificate of its own.
            anonymous = grpc.aio.secure_channel(
                target, grpc.ssl_channel_credentials(pki["ca"].read_bytes()))
            try:
                with pytest.raises(grpc.aio.AioRpcError):
                    await anonymous.unary_unary("/shoal.v1.ChunkStore/Has")(b"", timeout=5)
            finally:
                await anonymous.close(None)

        asyncio.run(probe())
