"""Processes for the registry benchmarks: Shoal, the reference registry, a private dockerd.

Every process runs in its own session, logs to a file and is ended by its PID (then its
process group, for dockerd's helpers); scratch directories live right under /tmp because
dockerd and containerd nest unix sockets several levels below the directories they get.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import Process, free_port

REFERENCE_BINARY = "/usr/bin/docker-registry"
REFERENCE_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
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
  secret: shoal-registry-benchmark
"""


@contextlib.contextmanager
def scratch_dir(prefix: str, parent: Path | None = None) -> Iterator[Path]:
    """A fresh directory (under /tmp unless told), removed with anything mounted below it."""
    path = Path(tempfile.mkdtemp(prefix=f"shoal-{prefix}-", dir=parent or "/tmp"))
    try:
        yield path
    finally:
        remove_tree(path)


def remove_tree(path: Path) -> None:
    prefix = str(path.resolve()) + "/"
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
        for point in reversed([m for m in mounts if m.startswith(prefix)]):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


@dataclass
class Registry:
    """One registry under test; `restart_empty` gives it a brand-new, empty data folder."""

    kind: str  # "shoal" or "reference"
    root: Path
    generation: int = 0
    address: str = ""
    process: Process | None = None

    @property
    def label(self) -> str:
        return "Shoal" if self.kind == "shoal" else "reference"

    @property
    def data(self) -> Path:
        return self.root / f"data-{self.generation}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.data.mkdir(exist_ok=True)
        self.address = f"127.0.0.1:{free_port()}"
        log = self.root / f"{self.kind}-{self.generation}.log"
        if self.kind == "shoal":
            argv = [sys.executable, "-m", "shoal", "--log-level", "WARNING", "serve",
                    "--data", str(self.data), "--listen", self.address]
        else:
            config = self.root / f"config-{self.generation}.yml"
            config.write_text(REFERENCE_CONFIG.format(root=self.data, address=self.address))
            argv = [REFERENCE_BINARY, "serve", str(config)]
        self.process = Process(self.kind, argv, log)
        self.process.wait_until(lambda: http_status(f"http://{self.address}/v2/") == 200,
                                f"GET http://{self.address}/v2/ answering 200")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def check_alive(self) -> None:
        """Raise with its exit status and log tail if the registry process has gone."""
        if self.process is not None and not self.process.alive():
            code = self.process.popen.returncode
            how = f"killed by signal {-code}" if code < 0 else f"exited with {code}"
            tail = self.process.log.read_text(errors="replace").splitlines()[-30:]
            raise RuntimeError(f"{self.label} registry (PID {self.pid}) {how}; log tail:\n"
                               + "\n".join(tail))

    def restart_empty(self) -> None:
        """Stop, drop the old data, start again on an empty data folder and a new port."""
        self.stop()
        remove_tree(self.data)
        self.generation += 1
        self.start()


@contextlib.contextmanager
def registry(kind: str) -> Iterator[Registry]:
    if kind == "reference" and not shutil.which(REFERENCE_BINARY):
        raise RuntimeError(f"{REFERENCE_BINARY} is missing (the docker-registry package)")
    with scratch_dir(kind) as root:
        running = Registry(kind, root)
        try:
            running.start()
            yield running
        finally:
            running.stop()


def _socket_answers(path: Path) -> bool:
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


CONTAINERD_CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{socket}.ttrpc"
[debug]
  address = "{socket}.debug"
"""


@dataclass
class Docker:
    """The docker CLI pointed at a private dockerd."""

    cli: str
    env: dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True,
                 timeout: float = 1800.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([self.cli, *args], env={**os.environ, **self.env},
                                capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} failed: {result.stderr.strip()}")
        return result


@contextlib.contextmanager
def docker_daemon() -> Iterator[Docker]:
    """A private containerd and dockerd (vfs storage, no networking) on their own sockets."""
    for binary in ("dockerd", "docker", "containerd"):
        if not shutil.which(binary):
            raise RuntimeError(f"{binary} is not installed")
    with scratch_dir("dkr") as root:
        ctd_socket = root / "c.sock"
        (root / "containerd.toml").write_text(
            CONTAINERD_CONFIG.format(root=root / "ctd", socket=ctd_socket))
        containerd = Process("containerd", ["containerd", "--config",
                                            str(root / "containerd.toml")], root / "ctd.log")
        try:
            containerd.wait_until(lambda: _socket_answers(ctd_socket), f"{ctd_socket} answers")
            socket_path = root / "d.sock"
            (root / "daemon.json").write_text("{}")
            argv = ["dockerd", "--config-file", str(root / "daemon.json"),
                    "--data-root", str(root / "data"), "--exec-root", str(root / "x"),
                    "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{socket_path}",
                    "--containerd", str(ctd_socket), "--containerd-namespace", "shoalbench",
                    "--containerd-plugins-namespace", "shoalbenchplugins",
                    "--iptables=false", "--ip6tables=false", "--ip-masq=false",
                    "--bridge=none", "--userland-proxy=false", "--storage-driver=vfs",
                    "--log-level=warn"]
            dockerd = Process("dockerd", argv, root / "dockerd.log")
            docker = Docker(shutil.which("docker") or "docker",
                            {"DOCKER_HOST": f"unix://{socket_path}",
                             "DOCKER_CONFIG": str(root / "cli"), "DOCKER_CLI_HINTS": "false"})
            try:
                dockerd.wait_until(lambda: _socket_answers(socket_path)
                                   and docker("version", check=False, timeout=20).returncode == 0,
                                   "docker version answering", timeout=120)
                yield docker
            finally:
                dockerd.stop(grace=30)
        finally:
            containerd.stop()


def _status(pid: int) -> dict[str, int]:
    """The kB figures of /proc/PID/status (VmRSS, RssAnon, ...); empty once it has exited."""
    found: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields = value.split()
        if len(fields) == 2 and fields[1] == "kB":
            found[key] = int(fields[0])
    return found


def reset_peak_rss(pid: int) -> bool:
    """Reset the kernel's VmHWM of `pid` to its current RSS (needs root or the same user)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Samples VmRSS of one process every `interval` seconds in a thread; keeps the peak,
    and the peaks of its anonymous and file-backed parts (mmap'd LMDB pages count as RSS)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self.peak_anon_kib = 0
        self.peak_file_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            status = _status(self.pid)
            self.peak_kib = max(self.peak_kib, status.get("VmRSS", 0))
            self.peak_anon_kib = max(self.peak_anon_kib, status.get("RssAnon", 0))
            self.peak_file_kib = max(self.peak_file_kib, status.get("RssFile", 0))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_kib / 1024

    @property
    def peaks_mib(self) -> dict[str, float]:
        return {"rss": self.peak_kib / 1024, "anon": self.peak_anon_kib / 1024,
                "file": self.peak_file_kib / 1024}
