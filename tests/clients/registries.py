"""The registry under test: Shoal by default, the CNCF reference registry for comparison.

SHOAL_TEST_REGISTRY selects it:
  shoal (default)  `python -m shoal serve --data DIR --listen 127.0.0.1:PORT`
  shoal-grpc       `shoal node` and `shoal gateway --node ...`: the same over gRPC
  reference        /usr/bin/docker-registry (distribution 2.x) on filesystem storage, with
                   deletes enabled; the yardstick every test must pass against first
  HOST:PORT        a registry that is already running (plain HTTP), left alone afterwards
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .procs import Process, ProcessFailed, free_port, http_status, scratch_dir

REFERENCE_BINARY = os.environ.get("SHOAL_TEST_REFERENCE_BINARY", "/usr/bin/docker-registry")
START_TIMEOUT = 60.0


@dataclass
class RunningRegistry:
    kind: str
    address: str  # host:port
    processes: list[Process]
    data: Path | None  # where it keeps its data, for a restart on the same data

    @property
    def process(self) -> Process | None:
        """The process that answers HTTP (the gateway, for a node and gateway pair)."""
        return self.processes[-1] if self.processes else None

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(process.log_tail(lines) for process in self.processes)


RegistryStarter = Callable[[Path], contextlib.AbstractContextManager[RunningRegistry]]


def selected_kind() -> str:
    return os.environ.get("SHOAL_TEST_REGISTRY", "shoal").strip() or "shoal"


@contextlib.contextmanager
def start_registry(data: Path | None = None) -> Iterator[RunningRegistry]:
    """Start the selected registry; on `data` when given (a restart), else on fresh data."""
    kind = selected_kind()
    starters = {
        "shoal": _start_shoal,
        "shoal-grpc": _start_shoal_grpc,
        "reference": _start_reference,
    }
    if kind in starters:
        with scratch_dir(kind) as root:
            if data is None:
                data = root / "data"
                data.mkdir()
            with starters[kind](root, data) as running:
                yield running
    elif ":" in kind:
        if data is not None:
            pytest.skip("cannot restart a registry that the tests did not start")
        status = http_status(f"http://{kind}/v2/")
        if status != 200:
            raise ProcessFailed(f"SHOAL_TEST_REGISTRY={kind}: GET /v2/ answered {status}")
        yield RunningRegistry("external", kind, [], None)
    else:
        raise ValueError(
            f"SHOAL_TEST_REGISTRY={kind!r}: expected shoal, shoal-grpc, reference or HOST:PORT"
        )


def _wait_for_v2(process: Process, address: str) -> None:
    process.wait_until(
        lambda: http_status(f"http://{address}/v2/") == 200,
        START_TIMEOUT,
        f"GET http://{address}/v2/ answers 200",
    )


def _shoal(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoal", *args]


@contextlib.contextmanager
def _start_shoal(root: Path, data: Path) -> Iterator[RunningRegistry]:
    """The embedded default: node and gateway in one process."""
    address = f"127.0.0.1:{free_port()}"
    argv = _shoal("serve", "--data", str(data), "--listen", address)
    process = Process("shoal serve", argv, root / "shoal.log")
    try:
        _wait_for_v2(process, address)
        yield RunningRegistry("shoal", address, [process], data)
    finally:
        process.stop()


@contextlib.contextmanager
def _start_shoal_grpc(root: Path, data: Path) -> Iterator[RunningRegistry]:
    """A storage node and a gateway in front of it, talking gRPC on loopback."""
    port_file = root / "node.port"
    node_argv = _shoal(
        "node", "--data", str(data), "--listen", "127.0.0.1:0", "--port-file", str(port_file)
    )
    node = Process("shoal node", node_argv, root / "node.log")
    try:
        node.wait_until(
            lambda: port_file.exists() and port_file.read_text().strip() != "",
            START_TIMEOUT,
            f"{port_file} holds the node's port",
        )
        node_address = f"127.0.0.1:{port_file.read_text().strip()}"
        address = f"127.0.0.1:{free_port()}"
        gateway_argv = _shoal("gateway", "--node", node_address, "--listen", address)
        gateway = Process("shoal gateway", gateway_argv, root / "gateway.log")
        try:
            _wait_for_v2(gateway, address)
            yield RunningRegistry("shoal-grpc", address, [node, gateway], data)
        finally:
            gateway.stop()
    finally:
        node.stop()


REFERENCE_CONFIG = """\
version: 0.1
log:
  level: {level}
  formatter: text
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {address}
  secret: shoal-client-tests
  headers:
    X-Content-Type-Options: [nosniff]
"""


@contextlib.contextmanager
def _start_reference(root: Path, data: Path) -> Iterator[RunningRegistry]:
    if not shutil.which(REFERENCE_BINARY):
        raise ProcessFailed(
            f"{REFERENCE_BINARY} is missing: install the docker-registry package "
            "(.ci/install-system-packages)"
        )
    address = f"127.0.0.1:{free_port()}"
    config = root / "config.yml"
    level = os.environ.get("SHOAL_TEST_REFERENCE_LOG_LEVEL", "info")
    config.write_text(REFERENCE_CONFIG.format(level=level, root=data, address=address))
    argv = [REFERENCE_BINARY, "serve", str(config)]
    process = Process("docker-registry", argv, root / "registry.log")
    try:
        _wait_for_v2(process, address)
        yield RunningRegistry("reference", address, [process], data)
    finally:
        process.stop()
