"""Hosts as Linux network namespaces on one bridge, each link shaped with `tc`.

The bridge lives in a namespace of its own, and every veth pair is created straight inside
the namespaces it joins, so nothing is ever added to (or removed from) the root namespace:
deleting the namespaces deletes every veth, bridge and qdisc with them. Every name starts
with `shoalb-<pid>-`, so two runs, or other people's interfaces, never collide.

Shaping: a host's link is shaped in both directions by an egress qdisc on each end of its
veth (the host's end limits what it sends, the bridge's end what it receives): HTB at the
rate, counting link-layer bytes (Ethernet, IP and TCP headers included) as a real link
does. Under it, by default, one HTB class per other host, each with an equal guaranteed
share and the whole rate as ceiling, and its own byte FIFO: the link is shared fairly
between peers, as fq_codel (Linux's usual default, missing from this kernel along with sfq
and fq) would share it between flows. With one plain tail-drop FIFO instead (`fair=False`),
a connection opened while others fill the queue can lose its handshake packets over and
over and stall for tens of seconds (seen: 3 of 8 hosts got their first byte after 28 s),
which measures the queue, not the registry.

On each host's own end (what its kernel would queue before its NIC), packets under 128
bytes (TCP's pure acknowledgements, SYNs, HTTP/2 window updates) go first, in a class of
their own: fq_codel serves such sparse flows ahead of bulk ones, so on a real host the
acknowledgements of what it downloads do not wait behind what it uploads. Queued with the
data instead (`ack_priority=False`), they waited up to 100 ms whenever a host's uplink was
full, and its downloads, each paced by those acknowledgements, slowed with them: a host
whose uplink ran at 0.9 of B or more received at 0.87 of B on average, against 0.94-0.95
with its uplink at 0.5-0.8 (benchmarks/p2p_fanout.py, N=8). The switch's end (each
host's downlink) keeps plain FIFOs: a switch port does not look at packet sizes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.common import Process

IP_TIMEOUT = 30.0
QUEUE_SECONDS = 0.1
SUBNET = "10.201.0"  # private to the bridge: no route leads out of the namespaces
HOST_OFFSET = 10
MAX_HOSTS = 240
ACK_CLASS = 0xfff0          # HTB minor of the small-packet class (peers take 2..MAX_HOSTS+2)
PREFIX_RE = re.compile(r"^shoalb-(\d+)-")


def prefix() -> str:
    return f"shoalb-{os.getpid()}-"


def preflight() -> str | None:
    """Why this machine cannot build the topology, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces, veths and tc need root: run it with sudo or as root"
    for binary in ("ip", "tc"):
        if shutil.which(binary) is None:
            return f"`{binary}` is missing: install iproute2 (apt-get install iproute2)"
    return None


def run(argv: Sequence[str], timeout: float = IP_TIMEOUT) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{result.stderr.strip()}")
    return result.stdout


def stale_namespaces() -> list[str]:
    """Namespaces an earlier run of this harness left behind (its PID is gone)."""
    found = []
    for name in namespaces():
        match = PREFIX_RE.match(name)
        if match and not Path(f"/proc/{match.group(1)}").exists():
            found.append(name)
    return found


def namespaces() -> list[str]:
    out = run(["ip", "netns", "list"])
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        run(["ip", "netns", "del", name])


@dataclass
class Host:
    """One namespace with one shaped link to the bridge."""

    ns: str
    address: str
    port: str  # its veth's end on the bridge, named inside the bridge namespace
    processes: list[Process] = field(default_factory=list)

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        # `ip netns exec` execs the command, so the child's PID is the command's own.
        return ["ip", "netns", "exec", self.ns, *argv]

    def start(self, name: str, argv: Sequence[str], log: Path,
              env: dict[str, str] | None = None) -> Process:
        proc = Process(name, self.exec_argv(argv), log, env)
        self.processes.append(proc)
        return proc

    def stop_all(self) -> None:
        while self.processes:
            self.processes.pop().stop()

    def link_bytes(self) -> tuple[int, int]:
        """(sent, received) bytes on its link as the kernel counted them (link layer)."""
        out = run(["ip", "-n", self.ns, "-s", "-j", "link", "show", "dev", "eth0"])
        stats = json.loads(out)[0]["stats64"]
        return int(stats["tx"]["bytes"]), int(stats["rx"]["bytes"])


class Topology:
    """A bridge, an origin host and N hosts; `close` removes all of it (idempotent)."""

    def __init__(self, hosts: int, rate_bit: int, origin_rate_bit: int | None = None,
                 fair: bool = True, ack_priority: bool = True) -> None:
        if not 1 <= hosts <= MAX_HOSTS:
            raise ValueError(f"between 1 and {MAX_HOSTS} hosts, not {hosts}")
        self.prefix = prefix()
        self.rate_bit = rate_bit
        self.origin_rate_bit = origin_rate_bit or rate_bit
        self.fair = fair
        self.ack_priority = ack_priority
        self.created: list[str] = []
        self.switch = self.prefix + "sw"
        self.origin = Host(self.prefix + "origin", f"{SUBNET}.1", "o")
        self.hosts = [Host(f"{self.prefix}h{i}", f"{SUBNET}.{i + HOST_OFFSET}", f"h{i}")
                      for i in range(hosts)]

    def build(self) -> None:
        self._add_namespace(self.switch)
        sw = ["ip", "-n", self.switch]
        run([*sw, "link", "add", "br0", "type", "bridge"])
        run([*sw, "link", "set", "br0", "up"])
        for host in [self.origin, *self.hosts]:
            self._add_namespace(host.ns)
            run([*sw, "link", "add", host.port, "type", "veth", "peer", "name", "eth0",
                 "netns", host.ns])
            run([*sw, "link", "set", host.port, "master", "br0", "up"])
            inside = ["ip", "-n", host.ns]
            run([*inside, "link", "set", "lo", "up"])
            run([*inside, "addr", "add", f"{host.address}/24", "dev", "eth0"])
            run([*inside, "link", "set", "eth0", "up"])
        everyone = [self.origin, *self.hosts]
        for host in everyone:
            rate = self.origin_rate_bit if host is self.origin else self.rate_bit
            others = [h.address for h in everyone if h is not host] if self.fair else []
            # The host's end sends to the others; the bridge's end delivers from them.
            self._shape(host.ns, "eth0", rate, "dst", others, self.ack_priority)
            self._shape(self.switch, host.port, rate, "src", others, False)

    def _add_namespace(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.created.append(name)

    @staticmethod
    def _shape(ns: str, dev: str, rate_bit: int, field: str, peers: list[str],
               ack_priority: bool) -> None:
        """HTB at `rate_bit` on `dev`: one class per peer address (matched on the packet's
        `field`, src or dst) plus a default class for the rest (ARP, stray packets), each
        guaranteed an equal share and allowed the whole rate, each with its own FIFO; with
        `ack_priority`, first a class served before them for packets under 128 bytes."""
        classes = len(peers) + 1
        # Each peer's FIFO holds 100 ms at the whole rate: usually one or two peers are
        # active, and a share of the queue split N ways dropped a fast sender's bursts
        # (a fifth of an origin's bytes were retransmitted at N=16).
        queue = max(128 * 1024, int(rate_bit / 8 * QUEUE_SECONDS))
        share = max(8, rate_bit // classes)
        # Equal quanta make HTB's borrowing a round robin between peers; a few MTUs per
        # turn keeps the turns short next to the 100 ms of queue.
        quantum = 4 * 1514
        lines = [f"qdisc add dev {dev} root handle 1: htb default 2",
                 f"class add dev {dev} parent 1: classid 1:1 htb rate {rate_bit}bit "
                 f"ceil {rate_bit}bit quantum {quantum}"]
        if ack_priority:
            # HTB lends spare rate to lower `prio` first; the u32 match is the IPv4 total
            # length (bytes 2-3 of the header) below 128.
            lines += [f"class add dev {dev} parent 1:1 classid 1:{ACK_CLASS:x} htb "
                      f"rate {share}bit ceil {rate_bit}bit quantum {quantum} prio 0",
                      f"qdisc add dev {dev} parent 1:{ACK_CLASS:x} handle {ACK_CLASS:x}: "
                      f"bfifo limit {queue}",
                      f"filter add dev {dev} parent 1: protocol ip prio 1 u32 "
                      f"match u16 0x0000 0xff80 at 2 flowid 1:{ACK_CLASS:x}"]
        for minor, peer in enumerate([None, *peers], start=2):
            lines += [f"class add dev {dev} parent 1:1 classid 1:{minor:x} htb "
                      f"rate {share}bit ceil {rate_bit}bit quantum {quantum} prio 1",
                      f"qdisc add dev {dev} parent 1:{minor:x} handle {minor:x}: bfifo "
                      f"limit {queue}"]
            if peer is not None:
                lines.append(f"filter add dev {dev} parent 1: protocol ip prio 2 u32 "
                             f"match ip {field} {peer}/32 flowid 1:{minor:x}")
        result = subprocess.run(["tc", "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
                                capture_output=True, text=True, timeout=IP_TIMEOUT)
        if result.returncode != 0:
            raise RuntimeError(f"tc -n {ns} -batch on {dev} failed: {result.stderr.strip()}")

    def port_bytes(self) -> dict[str, tuple[int, int]]:
        """Every link's (sent, received) bytes as its host sees them, read at once from the
        bridge's ends of the veths (one `ip` call, so a sampler can afford it often)."""
        out = run(["ip", "-n", self.switch, "-s", "-j", "link", "show"])
        by_port = {}
        for link in json.loads(out):
            stats = link.get("stats64")
            if stats is not None:
                # The bridge's end receives what the host sends, and sends what it receives.
                by_port[link["ifname"]] = (int(stats["rx"]["bytes"]), int(stats["tx"]["bytes"]))
        return {h.ns: by_port.get(h.port, (0, 0)) for h in [self.origin, *self.hosts]}

    def qdiscs(self) -> dict[str, str]:
        """What tc says is installed, per namespace, for the record."""
        shown = {}
        for ns in (self.switch, self.origin.ns, *(h.ns for h in self.hosts)):
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                shown[ns] = run(["tc", "-n", ns, "qdisc", "show"]).strip()
        return shown

    def close(self) -> None:
        """Stop every process started in a namespace, then delete the namespaces (which
        takes their veths, the bridge and the qdiscs with them)."""
        for host in [*self.hosts, self.origin]:
            host.stop_all()
        while self.created:
            delete_namespace(self.created.pop())
