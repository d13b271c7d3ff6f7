"""Fixtures of the node tests: a NodeAPI over each implementation, and real node processes.

Async tests run on uvloop, as the node does in production (pytest-asyncio is not needed):
a test argument holding an `ApiHandle` is opened inside the test's loop and closed after.
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop
from cluster.clustertest import ClusterProcesses, running_cluster
from nodetest import ApiHandle, NodeProcess

from node.api import NodeAPI
from node.cluster.client import ClusterNode
from node.edge import EdgeNode
from node.local import LocalNode
from node.rpc.client import RemoteNode
from node.swarm.directory import StaticOwners
from node.swarm.edge_swarm import EdgeSwarm


async def _run_with_apis(test: Any, kwargs: dict[str, Any]) -> None:
    opened: list[NodeAPI] = []
    try:
        for name, value in list(kwargs.items()):
            if isinstance(value, ApiHandle):
                kwargs[name] = await value.open()
                opened.append(kwargs[name])
        await test(**kwargs)
    finally:
        for api in opened:
            await api.close()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run_with_apis(test, kwargs))
    return True


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A temporary folder removed afterwards (tmp_path keeps the last few runs' data)."""
    path = Path(tempfile.mkdtemp(prefix="shoal-node-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def proc(scratch: Path) -> Iterator[NodeProcess]:
    """A node process on a scratch data folder, not yet started; killed at the end."""
    node = NodeProcess(scratch / "data", scratch)
    try:
        yield node
    finally:
        if node.proc is not None:
            node.kill()


@pytest.fixture(scope="session")
def node_process() -> Iterator[NodeProcess]:
    """One real node process shared by the tests that only talk to it over gRPC; each test
    uses repositories and blobs of its own."""
    path = Path(tempfile.mkdtemp(prefix="shoal-node-proc-"))
    proc = NodeProcess(path / "data", path).start()
    try:
        yield proc
    finally:
        try:
            proc.stop()
        finally:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def edge_origin() -> Iterator[NodeProcess]:
    """The origin of the edge under test: a node of its own, as tests that reuse data
    expect a node that has not seen it (the remote tests run on `node_process`)."""
    path = Path(tempfile.mkdtemp(prefix="shoal-edge-origin-"))
    proc = NodeProcess(path / "data", path).start()
    try:
        yield proc
    finally:
        try:
            proc.stop()
        finally:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster_processes() -> Iterator[ClusterProcesses]:
    """Three real member processes (R=2, W=2) shared by the tests that only talk to the
    cluster; each test uses repositories and blobs of its own."""
    path = Path(tempfile.mkdtemp(prefix="shoal-cluster-proc-"))
    try:
        with running_cluster(path, n=3, replicas=2) as cluster:
            yield cluster
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["local", "remote", "cluster", "edge"])
def api(request: pytest.FixtureRequest, scratch: Path) -> ApiHandle:
    """The NodeAPI under test: LocalNode on a scratch folder (verifying puts, as a node
    serving gRPC does), RemoteNode on a real node process, ClusterNode on three, or an
    edge of a node (blob reads through its cache and swarm fetches)."""
    if request.param == "cluster":
        cluster: ClusterProcesses = request.getfixturevalue("cluster_processes")

        async def open_cluster() -> NodeAPI:
            return await ClusterNode.connect(cluster.config)

        return ApiHandle("cluster", open_cluster)
    if request.param == "local":
        async def open_local() -> NodeAPI:
            return await LocalNode.open(scratch / "data", verify_puts=True)

        return ApiHandle("local", open_local)
    if request.param == "edge":
        origin: NodeProcess = request.getfixturevalue("edge_origin")

        async def open_edge() -> NodeAPI:
            swarm = EdgeSwarm(scratch / "cache", 64 << 20, StaticOwners([origin.target]), "",
                              p2p=False)
            await swarm.open()
            return EdgeNode(swarm, origin.target)

        return ApiHandle("edge", open_edge)
    proc: NodeProcess = request.getfixturevalue("node_process")

    async def open_remote() -> NodeAPI:
        return RemoteNode(proc.target)

    return ApiHandle("remote", open_remote)


@pytest.fixture
def local_dir(scratch: Path) -> Path:
    return scratch / "data"
