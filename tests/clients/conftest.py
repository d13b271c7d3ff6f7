"""Fixtures for the real-client tests: a registry and the engines that talk to it.

Every fixture starts real processes on free loopback ports with scratch directories of its
own, and stops them by PID afterwards. SHOAL_TEST_REGISTRY picks the registry under test
(see registries.py); SHOAL_TEST_KEEP=1 keeps scratch directories and logs for a look.
"""

from __future__ import annotations

import contextlib
import random
import re
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from .engines import (
    Containerd,
    ContainersConfig,
    Docker,
    Podman,
    Skopeo,
    containerd_daemon,
    docker_daemon,
    podman_engine,
    require_binary,
)
from .images import ImageMaker
from .procs import scratch_dir
from .registries import RegistryStarter, RunningRegistry, selected_kind, start_registry

# Log tails of the processes that a failing test's report shows, by fixture name.
_LOGGED: dict[str, Callable[[int], str]] = {}


def pytest_report_header(config: pytest.Config) -> str:
    return f"client tests: registry under test = {selected_kind()} (SHOAL_TEST_REGISTRY)"


@pytest.fixture(scope="session")
def registry_server() -> Iterator[RunningRegistry]:
    with start_registry() as running:
        _LOGGED["registry"] = running.log_tail
        try:
            yield running
        finally:
            _LOGGED.pop("registry", None)


@pytest.fixture
def registry_data() -> Iterator[Path]:
    """A data folder that outlives one registry process, for restart tests."""
    with scratch_dir("data") as data:
        yield data


@pytest.fixture
def start_registry_on() -> Iterator[RegistryStarter]:
    """Starts a registry of the selected kind on given data; its log joins failure reports."""

    @contextlib.contextmanager
    def starter(data: Path) -> Iterator[RunningRegistry]:
        with start_registry(data) as running:
            _LOGGED["start_registry_on"] = running.log_tail
            try:
                yield running
            except BaseException:
                # Its scratch folder goes when this block ends: keep the log for the report.
                tail = running.log_tail(40)
                _LOGGED["start_registry_on"] = lambda lines: tail
                raise

    try:
        yield starter
    finally:
        _LOGGED.pop("start_registry_on", None)


@pytest.fixture(scope="session")
def registry(registry_server: RunningRegistry) -> str:
    """host:port of the running registry under test (plain HTTP on loopback)."""
    return registry_server.address


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name that no other test uses, in a two-level namespace."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40]
    return f"clients/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def image_maker() -> ImageMaker:
    """Makes images unique to this test run."""
    return ImageMaker(random.SystemRandom().randrange(2**62))


@pytest.fixture(scope="session")
def containers_config() -> Iterator[ContainersConfig]:
    with scratch_dir("cfg") as root:
        yield ContainersConfig.create(root)


@pytest.fixture(scope="session")
def skopeo_binary() -> str:
    return require_binary("skopeo")


@pytest.fixture
def skopeo(skopeo_binary: str, containers_config: ContainersConfig) -> Skopeo:
    return Skopeo(skopeo_binary, containers_config)


@pytest.fixture(scope="session")
def podman_session(containers_config: ContainersConfig) -> Iterator[Podman]:
    with podman_engine(containers_config) as podman:
        yield podman


@pytest.fixture
def podman(podman_session: Podman) -> Podman:
    """podman on private vfs storage; skips when podman is not installed."""
    return podman_session


@pytest.fixture(scope="session")
def containerd_session() -> Iterator[Containerd]:
    with containerd_daemon() as daemon:
        _LOGGED["containerd"] = daemon.process.log_tail
        try:
            yield daemon
        finally:
            _LOGGED.pop("containerd", None)


@pytest.fixture
def containerd(containerd_session: Containerd) -> Containerd:
    """A private containerd with `ctr` bound to it; skips when containerd is missing."""
    return containerd_session


@pytest.fixture(scope="session")
def dockerd_session() -> Iterator[Docker]:
    with docker_daemon() as docker:
        _LOGGED["dockerd"] = docker.process.log_tail
        try:
            yield docker
        finally:
            _LOGGED.pop("dockerd", None)


@pytest.fixture
def dockerd(dockerd_session: Docker) -> Docker:
    """A private dockerd (vfs, no networking) with the docker CLI bound to it."""
    return dockerd_session


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, pytest.TestReport]:
    report: pytest.TestReport = yield
    if report.failed and report.when in ("setup", "call"):
        for name, log_tail in _LOGGED.items():
            if name != "registry" and name not in getattr(item, "fixturenames", ()):
                continue
            report.sections.append((f"{name} log (last lines)", log_tail(40)))
    return report
