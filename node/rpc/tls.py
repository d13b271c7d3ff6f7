"""Mutual TLS between gateways and nodes (and, with the cluster, between nodes): every
party presents a certificate signed by the cluster's CA, and a node refuses a client
that has none."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path   # this party's certificate chain (PEM)
    key: Path    # its private key (PEM)
    ca: Path     # the cluster CA that signs every party's certificate (PEM)

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.ca.read_bytes(), require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(), private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes())
