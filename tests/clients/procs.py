"""Real processes for the client tests: start, wait until ready, stop by PID, clean up."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

# Unix socket paths are limited to 107 bytes, and dockerd and containerd nest theirs several
# levels below the directories they are given, so scratch directories live right under /tmp.
SCRATCH_ROOT = Path(os.environ.get("SHOAL_TEST_SCRATCH", "/tmp"))


def keep_scratch() -> bool:
    """Whether to keep scratch directories (SHOAL_TEST_KEEP=1) for a look after the run."""
    return os.environ.get("SHOAL_TEST_KEEP", "") not in ("", "0")


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A fresh short directory, removed afterwards with anything mounted below it."""
    path = Path(tempfile.mkdtemp(prefix=f"shoal-{prefix}-", dir=SCRATCH_ROOT))
    try:
        yield path
    finally:
        if keep_scratch():
            print(f"keeping {path}")
        else:
            remove_tree(path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree, unmounting what a container engine left mounted inside."""
    for mountpoint in reversed(mounts_below(path)):
        subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def mounts_below(path: Path) -> list[str]:
    prefix = str(path.resolve()) + "/"
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[1].replace("\\040", " ") for line in lines if len(line.split()) > 1]
    return [point for point in points if point.startswith(prefix)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ProcessFailed(RuntimeError):
    pass


class Process:
    """A child process in its own session, logging to a file, stopped by its PID."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `ready` until it holds; fail early with the log if the process dies."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ProcessFailed(
                    f"{self.name} exited with {self.popen.returncode} before {what}\n"
                    f"argv: {' '.join(self.argv)}\n--- log tail ---\n{self.log_tail()}"
                )
            if ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise ProcessFailed(
                    f"{self.name} not ready after {timeout:.0f}s: {what}\n"
                    f"argv: {' '.join(self.argv)}\n--- log tail ---\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL the process and its group at once, as a crash would."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process, SIGKILL it after `grace`, then reap leftovers of its group."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(timeout=10)
        # Children it started (dockerd's shims, for example) share its process group, whose id
        # is its PID since it leads its own session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status of a GET of `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return None


def socket_answers(path: Path) -> bool:
    """Whether something accepts connections on the unix socket at `path`."""
    if not path.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(str(path))
        except OSError:
            return False
    return True


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 300.0,
    check: bool = True,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client command; on failure raise with its full output."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    result = subprocess.run(
        list(argv),
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"command failed with {result.returncode}: {' '.join(argv)}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def run_bytes(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 300.0
) -> subprocess.CompletedProcess[bytes]:
    """Run a command whose output must be kept byte for byte; raise when it fails."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    result = subprocess.run(
        list(argv), env=full_env, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        raise AssertionError(
            f"command failed with {result.returncode}: {' '.join(argv)}\n"
            f"--- stderr ---\n{result.stderr.decode(errors='replace')}"
        )
    return result
