"""A cluster of real node processes on loopback, for the cluster's tests."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

from nodetest import NodeProcess
from support import free_port

from node.cluster.config import ClusterConfig, Member, write
from node.rpc.tls import TlsFiles


def top_level_support() -> ModuleType:
    """tests/support.py, loaded from its path: putting tests/ on sys.path would let the
    tests/node folder shadow the real `node` package."""
    path = Path(__file__).resolve().parents[2] / "support.py"
    spec = importlib.util.spec_from_file_location("support", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ClusterProcesses:
    """N `shoal node --cluster` processes sharing one cluster file in `workdir`."""

    def __init__(self, workdir: Path, n: int = 3, replicas: int = 2,
                 write_quorum: int | None = None, repair_interval: float = 0.5,
                 scrub_interval: float = 3600.0, extra_members: int = 0,
                 tls: TlsFiles | None = None, node_args: Sequence[str] = (),
                 metrics: bool = False) -> None:
        """`metrics`: each member serves /metrics (`metrics_url`)."""
        self.workdir = workdir
        self.node_args = list(node_args)
        members = [Member(f"node{i}", f"127.0.0.1:{free_port()}")
                   for i in range(1, n + extra_members + 1)]
        self.all_members = members
        self.config = ClusterConfig(tuple(members[:n]), replicas=replicas,
                                    write_quorum=write_quorum or replicas, tls=tls)
        self.file = workdir / "cluster.toml"
        write(self.file, self.config)
        self.repair_interval = repair_interval
        self.scrub_interval = scrub_interval
        self.nodes: dict[str, NodeProcess] = {}
        self.metrics_ports = {m.id: free_port() for m in members} if metrics else {}
        for m in members[:n]:
            self._make(m)

    def _make(self, member: Member) -> NodeProcess:
        home = self.workdir / member.id
        home.mkdir(parents=True, exist_ok=True)
        node = NodeProcess(home / "data", home, listen=member.address, tls=self.config.tls,
                           args=[
            "--cluster", str(self.file), "--id", member.id,
            "--repair-interval", str(self.repair_interval),
            "--scrub-interval", str(self.scrub_interval), *self.node_args,
            *(["--metrics-listen", f"127.0.0.1:{self.metrics_ports[member.id]}"]
              if self.metrics_ports else [])])
        self.nodes[member.id] = node
        return node

    def start(self) -> ClusterProcesses:
        for node in self.nodes.values():
            node.start()
        return self

    def add_member(self) -> NodeProcess:
        """Grow the cluster file by the next spare member and start it; the running
        members read the file only at start, so they are restarted too."""
        member = self.all_members[len(self.config.members)]
        self.config = ClusterConfig((*self.config.members, member),
                                    replicas=self.config.replicas,
                                    write_quorum=self.config.write_quorum, tls=self.config.tls)
        write(self.file, self.config)
        for node in self.nodes.values():
            node.stop()
            node.start()
        return self._make(member).start()

    def pause(self, member_id: str) -> None:
        proc = self.nodes[member_id].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGSTOP)

    def resume(self, member_id: str) -> None:
        proc = self.nodes[member_id].proc
        assert proc is not None
        os.kill(proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.proc.pid, signal.SIGCONT)
                with contextlib.suppress(Exception):
                    node.stop()

    def metrics_url(self, member_id: str) -> str:
        return f"http://127.0.0.1:{self.metrics_ports[member_id]}/metrics"

    def logs(self) -> str:
        return "\n".join(f"--- {mid} ---\n{n.log()[-4000:]}" for mid, n in self.nodes.items())


@contextlib.contextmanager
def running_cluster(workdir: Path, **kwargs: object) -> Iterator[ClusterProcesses]:
    cluster = ClusterProcesses(workdir, **kwargs)  # type: ignore[arg-type]
    try:
        yield cluster.start()
    finally:
        cluster.stop()
