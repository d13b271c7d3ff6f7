"""`shoal cluster`: the compose.yaml topology as plain processes, for people without docker.

N storage nodes on 127.0.0.1:BASE+i and one gateway, children of this process; their
cluster file is written to the data folder, so `shoal status --cluster DIR/cluster.toml`
and more gateways can join them. SIGINT or SIGTERM stops them all; if one dies, the
others are stopped too and the exit status says so.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from node.cluster.config import ClusterConfig, Member, write

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0


def _bindable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_server((host.strip("[]"), int(port))).close()
    except OSError:
        return False
    return True


def run(nodes: int, replicas: int, write_quorum: int | None, data: Path,
        listen: tuple[str, int], base_port: int, repair_interval: float) -> int:
    try:
        config = ClusterConfig(
            tuple(Member(f"node{i}", f"127.0.0.1:{base_port + i}") for i in range(1, nodes + 1)),
            replicas=replicas, write_quorum=write_quorum or replicas)
    except ValueError as exc:
        raise SystemExit(f"shoal: {exc}") from None
    addresses = [*(m.address for m in config.members), f"{listen[0]}:{listen[1]}"]
    taken = [address for address in addresses if not _bindable(address)]
    if taken:
        # Checked before anything starts: one child failing to bind would stop the rest.
        raise SystemExit(f"shoal: {', '.join(taken)} in use; choose another --base-port "
                         "or --listen")
    data.mkdir(parents=True, exist_ok=True)
    cluster_file = data / "cluster.toml"
    write(cluster_file, config)
    shoal = [sys.executable, "-m", "shoal"]
    argvs = [[*shoal, "node", "--cluster", str(cluster_file), "--id", m.id,
              "--data", str(data / m.id), "--repair-interval", str(repair_interval)]
             for m in config.members]
    argvs.append([*shoal, "gateway", "--cluster", str(cluster_file),
                  "--listen", f"{listen[0]}:{listen[1]}"])
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    names = [*(m.id for m in config.members), "gateway"]
    # Every child gets its settings as flags: the parent's config file and SHOAL_*
    # variables (a SHOAL_LISTEN, say) would give all of them the same address.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    env["SHOAL_CONFIG"] = os.devnull
    children = [subprocess.Popen(argv, env=env) for argv in argvs[:-1]]
    # The gateway starts once every member listens, so its first requests find them up.
    deadline = time.monotonic() + START_TIMEOUT
    for member, child in zip(config.members, children, strict=True):
        host, port = member.address.rsplit(":", 1)
        while not stopping and child.poll() is None and time.monotonic() < deadline:
            try:
                socket.create_connection((host, int(port)), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
    children.append(subprocess.Popen(argvs[-1], env=env))
    log.info("cluster of %d nodes (R=%d, W=%d), file %s; registry on http://%s:%d",
             nodes, config.replicas, config.write_quorum, cluster_file, *listen)
    status = 0
    try:
        while not stopping:
            dead = [(n, c) for n, c in zip(names, children, strict=True)
                    if c.poll() is not None]
            if dead:
                log.error("%s exited with %s; stopping the cluster", dead[0][0],
                          dead[0][1].returncode)
                status = 1
                break
            time.sleep(0.2)
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    return status
