"""Real registry clients, each isolated in its own scratch directory.

Nothing here touches the machine's own engines or configuration: containerd and dockerd are
private instances on their own sockets, and skopeo and podman read policy, registries and
auth files written for the test session only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .procs import Process, run, run_bytes, scratch_dir, socket_answers

INSTALL_HINT = "install it with .ci/install-system-packages"


def require_binary(name: str, *candidates: str) -> str:
    """The path of a client binary, or skip the test when it is not installed at all.

    With SHOAL_TEST_REQUIRE_CLIENTS=1 (for CI, which installs every client) a missing client
    fails the test instead, so that a broken install step cannot pass as a green run.
    """
    for candidate in (*candidates, name):
        found = shutil.which(candidate)
        if found:
            return found
    message = f"{name} is not installed: {INSTALL_HINT}"
    if os.environ.get("SHOAL_TEST_REQUIRE_CLIENTS", "") not in ("", "0"):
        pytest.fail(message + " (SHOAL_TEST_REQUIRE_CLIENTS is set)", pytrace=False)
    pytest.skip(message)


@dataclass
class ContainersConfig:
    """Private containers-common configuration shared by skopeo and podman."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, root: Path) -> ContainersConfig:
        root.mkdir(parents=True, exist_ok=True)
        policy = root / "policy.json"
        policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        registries = root / "registries.conf"
        registries.write_text('unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
        auth = root / "auth.json"
        auth.write_text('{"auths": {}}')
        containers_conf = root / "containers.conf"
        containers_conf.write_text(
            '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n'
            '[containers]\nlog_driver = "k8s-file"\n'
        )
        tmp = root / "tmp"
        tmp.mkdir(exist_ok=True)
        env = {
            "CONTAINERS_REGISTRIES_CONF": str(registries),
            "CONTAINERS_CONF": str(containers_conf),
            "REGISTRY_AUTH_FILE": str(auth),
            "XDG_CONFIG_HOME": str(root / "xdg-config"),
            "TMPDIR": str(tmp),
        }
        return cls(root, env)

    @property
    def policy(self) -> Path:
        return self.root / "policy.json"


@dataclass
class Skopeo:
    binary: str
    config: ContainersConfig

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.binary, "--policy", str(self.config.policy), *args]
        return run(argv, env=self.config.env, check=check, timeout=timeout)

    def copy(self, source: str, dest: str, *extra: str) -> None:
        self(
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            *extra,
            source,
            dest,
        )

    def inspect(self, ref: str, *extra: str) -> dict[str, object]:
        out = self("inspect", "--tls-verify=false", *extra, ref).stdout
        return dict(json.loads(out))

    def raw_manifest(self, ref: str) -> bytes:
        """The manifest bytes exactly as the registry serves them."""
        argv = [
            self.binary,
            "--policy",
            str(self.config.policy),
            "inspect",
            "--tls-verify=false",
            "--raw",
            ref,
        ]
        return run_bytes(argv, env=self.config.env).stdout


@dataclass
class Podman:
    binary: str
    config: ContainersConfig
    root: Path

    @property
    def argv(self) -> list[str]:
        return [
            self.binary,
            "--root",
            str(self.root / "storage"),
            "--runroot",
            str(self.root / "run"),
            "--storage-driver",
            "vfs",
            "--tmpdir",
            str(self.root / "libpod-tmp"),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--network-config-dir",
            str(self.root / "networks"),
        ]

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        env = {**self.config.env, "XDG_RUNTIME_DIR": str(self.root / "xdg-run")}
        return run([*self.argv, *args], env=env, check=check, timeout=timeout)

    def reset(self) -> None:
        self("system", "reset", "--force", check=False)


@contextlib.contextmanager
def podman_engine(config: ContainersConfig) -> Iterator[Podman]:
    binary = require_binary("podman")
    with scratch_dir("pod") as root:
        (root / "xdg-run").mkdir(mode=0o700)
        podman = Podman(binary, config, root)
        try:
            yield podman
        finally:
            podman.reset()


CONTAINERD_CONFIG = """\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = "{socket}.debug"
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"
"""


@dataclass
class Containerd:
    """A private containerd, and its `ctr` client in a namespace of the tests."""

    process: Process
    socket: Path
    ctr_binary: str
    namespace: str = "shoaltest"

    def ctr(
        self, *args: str, check: bool = True, timeout: float = 300.0
    ) -> subprocess.CompletedProcess[str]:
        argv = [self.ctr_binary, "--address", str(self.socket), "--namespace", self.namespace]
        return run([*argv, *args], check=check, timeout=timeout)


@contextlib.contextmanager
def containerd_daemon(name: str = "ctd") -> Iterator[Containerd]:
    binary = require_binary("containerd")
    ctr = require_binary("ctr")
    with scratch_dir(name) as root:
        socket = root / "c.sock"
        config = root / "config.toml"
        config.write_text(
            CONTAINERD_CONFIG.format(root=root / "root", state=root / "state", socket=socket)
        )
        process = Process("containerd", [binary, "--config", str(config)], root / "log")
        try:
            process.wait_until(lambda: socket_answers(socket), 60, f"{socket} accepts")
            daemon = Containerd(process, socket, ctr)
            process.wait_until(
                lambda: daemon.ctr("version", check=False, timeout=10).returncode == 0,
                60,
                "ctr version answers",
            )
            yield daemon
        finally:
            process.stop()


@dataclass
class Docker:
    """A private dockerd and the docker CLI pointed at it."""

    process: Process
    socket: Path
    cli: str
    env: dict[str, str]

    def __call__(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 300.0,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run(
            [self.cli, *args],
            env={**self.env, **(env or {})},
            check=check,
            timeout=timeout,
            cwd=cwd,
        )


@contextlib.contextmanager
def docker_daemon() -> Iterator[Docker]:
    dockerd = require_binary("dockerd")
    # Debian's docker.io CLI matches its dockerd; a newer CLI elsewhere on PATH works too.
    cli = require_binary("docker", "/usr/bin/docker")
    with containerd_daemon("dctd") as containerd, scratch_dir("dkr") as root:
        socket = root / "d.sock"
        config = root / "daemon.json"
        config.write_text("{}")
        argv = [
            dockerd,
            "--config-file",
            str(config),
            "--data-root",
            str(root / "data"),
            "--exec-root",
            str(root / "x"),
            "--pidfile",
            str(root / "dockerd.pid"),
            "--host",
            f"unix://{socket}",
            "--containerd",
            str(containerd.socket),
            "--containerd-namespace",
            "shoalmoby",
            "--containerd-plugins-namespace",
            "shoalplugins",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--bridge=none",
            "--userland-proxy=false",
            "--storage-driver=vfs",
            "--log-level=info",
        ]
        process = Process("dockerd", argv, root / "dockerd.log")
        env = {
            "DOCKER_HOST": f"unix://{socket}",
            "DOCKER_CONFIG": str(root / "cli"),
            "DOCKER_BUILDKIT": "0",
            "DOCKER_CLI_HINTS": "false",
        }
        docker = Docker(process, socket, cli, env)
        try:
            process.wait_until(lambda: socket_answers(socket), 120, f"{socket} accepts")
            process.wait_until(
                lambda: docker("version", check=False, timeout=20).returncode == 0,
                120,
                "docker version answers",
            )
            yield docker
        finally:
            process.stop(grace=30)
