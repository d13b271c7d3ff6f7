"""Mutual TLS between the members of a cluster and its clients: the [tls] section of the
cluster file secures every connection, member to member included, and a client without a
certificate from the cluster's CA is refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cluster.clustertest import running_cluster, top_level_support
from nodetest import collect, pieces, sha256
from test_faults import wait_converged

from node.blobio import write_blob
from node.cluster.client import ClusterNode
from node.errors import Unavailable
from node.rpc.client import RemoteNode
from node.rpc.tls import TlsFiles


async def test_a_cluster_speaks_mutual_tls_and_refuses_strangers(scratch: Path) -> None:
    pki = top_level_support().make_pki(scratch)
    # One certificate for every member (127.0.0.1 on loopback), used as server and client.
    tls = TlsFiles(pki["server_cert"], pki["server_key"], pki["ca"])
    with running_cluster(scratch, n=3, replicas=2, tls=tls) as cluster:
        api = await ClusterNode.connect(cluster.config)
        try:
            data = os.urandom(6 << 20)
            await write_blob(api, "secure/app", sha256(data), pieces(data))
            assert await collect(api.read_blob(sha256(data))) == data
        finally:
            await api.close()
        # Repair and status go member to member over the same mutual TLS.
        await wait_converged(cluster)

        stranger = RemoteNode(cluster.config.members[0].address, unary_deadline=5)
        try:
            with pytest.raises(Unavailable):
                await stranger.stat_blob(sha256(data))
        finally:
            await stranger.close()
