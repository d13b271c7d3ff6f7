"""Peer-to-peer fan-out on real networking: N hosts pull one S-byte blob at once over links
of bandwidth B, with and without peer-to-peer, against the physical bounds S/B and N·S/B.

Each host is a network namespace with its own address on a Linux bridge; every link (the
origin's too) is shaped to B in both directions with tc (benchmarks/netns.py). The origin
namespace runs `shoal node` (gRPC on :7400) and a `shoal gateway` in front of it (:5000).
One S-byte random blob is pushed into repository bench/fanout through that gateway over the
origin's own loopback, so unshaped: seeding is not part of what is timed. Then, per mode:

  p2p      `shoal edge --origin ORIGIN:7400` in every host, serving 127.0.0.1:5000 there;
  no-p2p   the same with --no-p2p (baseline: every byte comes from the origin);
  gateway  a plain `shoal gateway --node ORIGIN:7400` in every host (exists today: the
           no-p2p topology without an edge's cache, to validate the plumbing);
  direct   no service in the hosts: each GETs straight from the origin's gateway.

In every mode all N hosts GET the blob at the same moment through `ip netns exec` (a small
stdlib client, benchmarks/fanout_client.py, that discards the bytes but checks the digest).
A host's completion time runs from the common start to its last byte. Origin egress is the
origin veth's tx_bytes over the run, independent of Shoal's own accounting; the veth counts
a TSO/GSO super-packet's headers once, so it comes within about 1 % of the payload, while
retransmitted bytes count again. The shaper charges every segment's headers, so a transfer
takes 1514/1448 = 1.046 times payload/B at MTU 1500: the bounds "with headers" below.
Times are printed as multiples of S/B (S·8/B seconds), egress as multiples of S.
Without P2P the origin's link carries N·S, so the slowest host needs about N·S/B: the
`direct` and `no-p2p` rows check that the harness measures what it claims.

    python -m benchmarks.p2p_fanout [--hosts 8] [--size-mib 256] [--rate-mbit 100]
                                    [--modes p2p,no-p2p] [--client-only] [--out DIR]

--client-only runs `direct,gateway`, which need only what exists on main today. Must run
as root (namespaces, veths, tc). Everything it makes is named shoalb-<pid>-* and removed on
exit, Ctrl-C, SIGTERM or an error; --clean-stale removes what a killed run left behind.

Every link's byte counters are sampled every 0.25 s: the run prints, per tenth of S/B, the
origin's uplink and the hosts' downlinks (mean and minimum) as fractions of B, and when the
origin had sent 99 % of its bytes; the samples go to the JSON (`links`). That tells an
origin that idles from hosts that wait on relays.

Links are shared fairly between peers (netns.py says why); --shared-fifo gives each link
one tail-drop FIFO instead. Each host's own queue sends packets under 128 bytes (TCP
acknowledgements) first, as the fq_codel of a real host would; --ack-fifo queues them
behind its uploads instead (how every figure before 2026-12-06, session 8, was taken).
A note is printed when the machine's cores were saturated: the figures then measure the
CPU, not the links.

Measured on this 2-core machine, 2026-11-28, B = 100 Mbit/s, other engineers' tests running
alongside (load average 4-9).
  validation, --client-only (slowest / median / fastest in S/B; origin egress in S):
    N=1  S=32 MiB  direct 1.06 (bound 1.05 with headers)
    N=4  S=32 MiB  direct  4.19 / 4.18 / 4.11, egress 4.01;  gateway 4.21 / 4.18 / 4.17, 4.01
    N=8  S=64 MiB  direct  8.38 / 8.34 / 8.29, egress 8.02;  gateway 8.38 / 8.34 / 8.20, 8.02
    (bounds with headers: 4.18 and 8.36; the first byte came within 0.2 S/B)
  CPU per process at B (CPU seconds per byte moved, scaled to B): a host's gateway relaying
  B from the origin 6-12 % of a core (peak RSS 82 MiB), the client 2 %, the origin's
  gateway + node 4-8 % of a core per B of egress. The kernel's share (veth, bridge, HTB)
  is not attributed to any of them.
  How many hosts at once: with a fat origin (--origin-rate-mbit N·100, so every host
  receives at B at the same time, the load P2P puts on the machine), gateway mode, S=32 MiB,
  slowest host (the longest wait for a first byte; the slowest streaming after it), S/B:
    N=4  1.08 (0.06; 1.02)     N=8  1.17 (0.15; 1.02)     N=12  1.26 (0.25; 1.03)
    N=16 1.49 (0.46; 1.11)     N=16 at B=50: 1.29 (0.31; 0.99)
  The cores are saturated from N=8 on. Up to N·B = 1.2 Gbit/s the links stay the limit of
  the streaming; what grows is the start (process wake-ups, connection and gRPC set-up on
  busy cores: 0.2-1.2 s, which is 0.1-0.5 S/B at 32 MiB but under 0.06 at the default
  256 MiB). At 1.6 Gbit/s the streaming itself falls behind. An edge also stores chunks and
  serves peers, so it costs more per byte than a gateway: keep N=8 at B=100 Mbit/s (the
  defaults) for p2p, and lower B for more hosts (figures are in S/B, so they stay
  comparable). Namespaces are not the limit: 33 of them are built in 2.5 s, and 32 hosts
  (65 Shoal and client processes) ran at B=10 Mbit/s.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from benchmarks import netns
from benchmarks.common import RESULTS, Process, peak_rss_mib, pyplot
from benchmarks.netns import Host, Topology
from benchmarks.registry_servers import remove_tree, scratch_dir

ROOT = Path(__file__).resolve().parent.parent
REPO = "bench/fanout"
NODE_PORT = 7400
PEER_PORT = 7401
HTTP_PORT = 5000
MODES = ("p2p", "no-p2p", "gateway", "direct")
EDGE_MODES = ("p2p", "no-p2p")
CLIENT_ONLY = ("direct", "gateway")
READY_TIMEOUT = 90.0
# What a full TCP segment costs the shaper at MTU 1500 against the payload it carries:
# Ethernet 14 + IP 20 + TCP 20 + timestamps 12 bytes per 1448. Bounds in bytes on the wire
# are this much above bounds in payload bytes.
WIRE = 1514 / 1448
TICKS = os.sysconf("SC_CLK_TCK")


def shoal(*args: str, level: str = "WARNING") -> list[str]:
    return [sys.executable, "-m", "shoal", "--log-level", level, *args]


def helper(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.fanout_client", *args]


ENV = {"PYTHONPATH": str(ROOT)}


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process so far (0 once it has gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        return peak_rss_mib(pid)
    return None


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


@dataclass
class Blob:
    path: Path
    size: int
    digest: str


def make_blob(path: Path, size: int) -> Blob:
    digester = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 1 << 20))
            digester.update(piece)
            out.write(piece)
            left -= len(piece)
    return Blob(path, size, f"sha256:{digester.hexdigest()}")


def run_in(host: Host, argv: list[str], timeout: float) -> None:
    result = subprocess.run(host.exec_argv(argv), capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, **ENV}, timeout=timeout,
                            stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"in {host.ns}: {' '.join(argv)} failed: {result.stderr.strip()}")


def probe_all(pairs: list[tuple[Host, str]], services: list[Process]) -> None:
    """Wait until each host's URL answers 200, the probes running side by side; give up at
    once when a service has exited."""
    probes = [subprocess.Popen(host.exec_argv(helper("probe", url, "--timeout",
                                                     str(READY_TIMEOUT))),
                               cwd=ROOT, env={**os.environ, **ENV}, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
              for host, url in pairs]
    deadline = time.monotonic() + READY_TIMEOUT + 30
    try:
        while any(p.poll() is None for p in probes):
            if any(not proc.alive() for proc in services) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for probe in probes:
            if probe.poll() is None:
                probe.kill()
    failures = []
    for (host, _), probe in zip(pairs, probes, strict=True):
        _, err = probe.communicate(timeout=30)
        if probe.returncode != 0:
            failures.append(f"{host.ns}: {err.strip() or 'gave up'}")
    dead = []
    for proc in services:
        if not proc.alive():
            tail = proc.log.read_text(errors="replace").splitlines()[-15:]
            dead.append(f"{proc.name} exited ({proc.popen.returncode}):\n" + "\n".join(tail))
    if failures or dead:
        raise RuntimeError("not ready:\n" + "\n".join(failures + dead))


@dataclass
class Origin:
    node: Process
    gateway: Process


def start_origin(topo: Topology, work: Path, serve_limit: int | None) -> Origin:
    host = topo.origin
    port_file = work / "origin.port"
    argv = shoal("node", "--data", str(work / "origin-data"), "--listen", f"0.0.0.0:{NODE_PORT}",
                 "--port-file", str(port_file))
    if serve_limit is not None:
        argv += ["--serve-limit", str(serve_limit)]
    node = host.start("origin-node", argv, work / "origin-node.log", ENV)
    node.wait_until(lambda: port_file.exists() and bool(port_file.read_text().strip()),
                    "its port file is written")
    gateway = host.start("origin-gateway",
                         shoal("gateway", "--node", f"127.0.0.1:{NODE_PORT}",
                               "--listen", f"0.0.0.0:{HTTP_PORT}"),
                         work / "origin-gateway.log", ENV)
    probe_all([(host, f"http://127.0.0.1:{HTTP_PORT}/v2/")], [node, gateway])
    return Origin(node, gateway)


def seed(topo: Topology, blob: Blob) -> float:
    """Push the blob through the origin's gateway on its loopback (unshaped)."""
    start = time.perf_counter()
    run_in(topo.origin, helper("push", f"http://127.0.0.1:{HTTP_PORT}", REPO, str(blob.path),
                               blob.digest), timeout=1800)
    return time.perf_counter() - start


def edge_available() -> str | None:
    """Why `shoal edge` cannot run here, or None."""
    try:
        result = subprocess.run(shoal("edge", "--help"), capture_output=True, text=True,
                                timeout=60, cwd=ROOT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    if result.returncode != 0:
        return (result.stderr.strip().splitlines() or ["no output"])[-1]
    return None


def host_service(mode: str, host: Host, topo: Topology, work: Path,
                 args: argparse.Namespace) -> list[str] | None:
    origin = f"{topo.origin.address}:{NODE_PORT}"
    listen = f"127.0.0.1:{HTTP_PORT}"
    if mode in EDGE_MODES:
        argv = shoal("edge", "--data", str(work / f"{mode}-{host.port}"), "--listen", listen,
                     "--peer-listen", f"{host.address}:{PEER_PORT}", "--origin", origin,
                     level="DEBUG" if args.trace else "WARNING")
        if mode == "no-p2p":
            argv.append("--no-p2p")
        if args.cache_size is not None:
            argv += ["--cache-size", str(args.cache_size)]
        if args.edge_upload_limit is not None:
            argv += ["--upload-limit", str(args.edge_upload_limit)]
        return argv
    if mode == "gateway":
        return shoal("gateway", "--node", origin, "--listen", listen)
    return None


@dataclass
class Client:
    host: Host
    popen: subprocess.Popen[str]
    line: str = ""
    arrived: float = 0.0


def read_lines(clients: list[Client], deadline: float) -> None:
    """Read one line from each client's stdout (into .line), until the deadline."""
    waiting = {c.popen.stdout.fileno(): c for c in clients if c.popen.stdout is not None}
    with selectors.DefaultSelector() as sel:
        for fd in waiting:
            sel.register(fd, selectors.EVENT_READ)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{len(waiting)} client(s) silent: "
                                   + ", ".join(c.host.ns for c in waiting.values()))
            for key, _ in sel.select(timeout=left):
                client = waiting.pop(int(key.fd))
                sel.unregister(key.fd)
                stdout: IO[str] | None = client.popen.stdout
                assert stdout is not None
                client.line = stdout.readline().strip()
                client.arrived = time.monotonic()


def kill_clients(clients: list[Client]) -> None:
    for client in clients:
        if client.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(client.popen.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            client.popen.wait(timeout=10)


class LinkSampler:
    """Samples every link's byte counters every `every` seconds while a mode runs: where a
    run loses time against S/B (an idle origin, a host whose downlink waits) shows here."""

    def __init__(self, topo: Topology, every: float = 0.25) -> None:
        self.topo = topo
        self.every = every
        self.samples: list[tuple[float, dict[str, tuple[int, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, go: float) -> None:
        self.go = go
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.samples.append((time.monotonic() - self.go, self.topo.port_bytes()))
            self._stop.wait(self.every)

    def summary(self, unit: float, rate_bit: int) -> dict[str, Any]:
        """Per tenth of S/B: the origin's link and the hosts' downlinks (mean, minimum) as
        fractions of B; and by when the origin had sent 99 % of what it sent."""
        if len(self.samples) < 2:
            return {}
        t0, first = self.samples[0]
        origin = self.topo.origin.ns
        hosts = [h.ns for h in self.topo.hosts]
        per_second = rate_bit / 8
        step = unit / 10
        rows = []
        edge = step
        prev_t, prev = t0, first
        for t, counts in self.samples[1:]:
            if t < edge and (t, counts) != self.samples[-1]:
                continue
            span = max(t - prev_t, 1e-9)
            down = [(counts[h][1] - prev[h][1]) / span / per_second for h in hosts]
            rows.append({"until_s_over_b": t / unit,
                         "origin_up": (counts[origin][0] - prev[origin][0]) / span / per_second,
                         "hosts_down_mean": statistics.mean(down), "hosts_down_min": min(down)})
            prev_t, prev = t, counts
            edge = t + step
        last = self.samples[-1][1][origin][0] - first[origin][0]
        done_at = next(t for t, c in self.samples if c[origin][0] - first[origin][0] >= 0.99 * last)
        return {"every_s": self.every, "origin_99pct_sent_s_over_b": done_at / unit,
                "tenths": rows, "samples": [(t, c) for t, c in self.samples]}


@dataclass
class ModeRun:
    mode: str
    hosts: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)


def run_mode(mode: str, topo: Topology, origin: Origin, blob: Blob, work: Path,
             args: argparse.Namespace) -> ModeRun:
    unit = blob.size * 8 / args.rate_bit  # S/B in seconds
    n = len(topo.hosts)
    services: dict[str, Process] = {}
    for host in topo.hosts:
        argv = host_service(mode, host, topo, work, args)
        if argv is not None:
            services[host.ns] = host.start(f"{mode}-{host.port}", argv,
                                           work / f"{mode}-{host.port}.log", ENV)
    if mode == "direct":
        base = f"http://{topo.origin.address}:{HTTP_PORT}"
        probe_all([(h, f"{base}/v2/") for h in topo.hosts], [origin.node, origin.gateway])
    else:
        base = f"http://127.0.0.1:{HTTP_PORT}"
        probe_all([(h, f"{base}/v2/") for h in topo.hosts], list(services.values()))
    url = f"{base}/v2/{REPO}/blobs/{blob.digest}"

    timeout = max(60.0, 4 * n * unit + 60)
    clients: list[Client] = []
    try:
        with (work / f"{mode}-clients.log").open("ab") as log:
            for host in topo.hosts:
                popen = subprocess.Popen(
                    host.exec_argv(helper("fetch", url, blob.digest, str(blob.size))),
                    cwd=ROOT, env={**os.environ, **ENV}, stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
                clients.append(Client(host, popen))
        read_lines(clients, time.monotonic() + READY_TIMEOUT)
        if bad := [c.host.ns for c in clients if c.line != "ready"]:
            raise RuntimeError(f"clients did not start: {bad}")

        links_before = {h.ns: h.link_bytes() for h in [topo.origin, *topo.hosts]}
        cpu_before = {name: cpu_seconds(p.pid) for name, p in
                      [("origin_node", origin.node), ("origin_gateway", origin.gateway),
                       *services.items()]}
        busy_before = machine_busy()
        sampler = LinkSampler(topo)
        go = time.monotonic()
        sampler.start(go)
        for client in clients:
            assert client.popen.stdin is not None
            client.popen.stdin.write("go\n")
            client.popen.stdin.flush()
        read_lines(clients, go + timeout)
        wall = time.monotonic() - go
        sampler.stop()
        busy_after = machine_busy()
        cpu_after = {name: cpu_seconds(p.pid) for name, p in
                     [("origin_node", origin.node), ("origin_gateway", origin.gateway),
                      *services.items()]}
        links_after = {h.ns: h.link_bytes() for h in [topo.origin, *topo.hosts]}
        rss = {name: peak_rss(p.pid) for name, p in
               [("origin_node", origin.node), ("origin_gateway", origin.gateway),
                *services.items()]}
    finally:
        kill_clients(clients)
        for host in topo.hosts:
            host.stop_all()
            # An edge's cache is a copy of the blob per host: gone before the next mode.
            remove_tree(work / f"{mode}-{host.port}")

    result = ModeRun(mode)
    for client in clients:
        report: dict[str, Any] = (json.loads(client.line) if client.line.startswith("{")
                                  else {"error": client.line or "no report"})
        ns = client.host.ns
        sent = links_after[ns][0] - links_before[ns][0]
        received = links_after[ns][1] - links_before[ns][1]
        seconds = report.get("ended", client.arrived) - go
        service_cpu = cpu_after.get(ns, 0.0) - cpu_before.get(ns, 0.0)
        result.hosts.append({
            "host": ns, "address": client.host.address, "seconds": seconds,
            "s_over_b": seconds / unit, "start_delay": report.get("started", go) - go,
            "first_byte": (report["first_byte"] - go) if report.get("first_byte") else None,
            "bytes": report.get("bytes", 0), "digest_ok": bool(report.get("digest_ok")),
            "error": report.get("error"), "status": report.get("status"),
            "client_cpu_seconds": report.get("cpu_seconds"),
            "service_cpu_seconds": service_cpu if ns in services else None,
            "service_peak_rss_mib": rss.get(ns),
            "link_sent_bytes": sent, "link_received_bytes": received})
    times = [h["seconds"] for h in result.hosts]
    egress = links_after[topo.origin.ns][0] - links_before[topo.origin.ns][0]
    origin_cpu = {k: cpu_after[k] - cpu_before[k] for k in ("origin_node", "origin_gateway")}
    peers_sent = sum(h["link_sent_bytes"] for h in result.hosts)
    result.figures = {
        "ok": all(h["digest_ok"] for h in result.hosts),
        "slowest_seconds": max(times), "median_seconds": statistics.median(times),
        "fastest_seconds": min(times),
        "slowest_s_over_b": max(times) / unit, "median_s_over_b": statistics.median(times) / unit,
        "fastest_s_over_b": min(times) / unit,
        # Waiting for the first byte (start-up, connection set-up, a busy CPU) against
        # streaming: tells a slow start from a slow link.
        "first_byte_max_s_over_b": max((h["first_byte"] or 0.0) for h in result.hosts) / unit,
        "streaming_max_s_over_b": max(h["seconds"] - (h["first_byte"] or 0.0)
                                      for h in result.hosts) / unit,
        "expected_slowest_s_over_b": bound(mode, n, args),
        "expected_slowest_s_over_b_on_wire": bound(mode, n, args) * WIRE,
        "origin_egress_bytes": egress, "origin_egress_over_s": egress / blob.size,
        "hosts_sent_bytes": peers_sent, "hosts_sent_over_s": peers_sent / blob.size,
        "wall_seconds": wall,
        "origin_cpu_seconds": origin_cpu,
        "origin_peak_rss_mib": {k: rss[k] for k in ("origin_node", "origin_gateway")},
        "origin_cores": sum(origin_cpu.values()) / wall,
        "machine_busy_cores": (busy_after[0] - busy_before[0]) / wall,
        "cores_at_rate": cores_at_rate(result.hosts, origin_cpu, egress, args.rate_bit),
        "links": sampler.summary(unit, args.rate_bit),
    }
    return result


def bound(mode: str, n: int, args: argparse.Namespace) -> float:
    """The slowest host's physical bound in S/B: its own link, or for modes that pull every
    byte from the origin, the origin's link carrying N·S."""
    if mode == "p2p":
        return 1.0
    return max(1.0, n * float(args.rate_bit) / float(args.origin_rate_bit))


def cores_at_rate(hosts: list[dict[str, Any]], origin_cpu: dict[str, float], egress: int,
                  rate_bit: int) -> dict[str, float]:
    """CPU (in cores) each role would use moving data at the full link rate B, from the CPU
    seconds it spent per byte it moved in this run."""
    per_second = rate_bit / 8
    found = {"origin": sum(origin_cpu.values()) / max(egress, 1) * per_second}
    moved = sum(h["bytes"] for h in hosts) or 1
    client = [h["client_cpu_seconds"] for h in hosts if h["client_cpu_seconds"] is not None]
    if client:
        found["client"] = sum(client) / moved * per_second
    service = [h["service_cpu_seconds"] for h in hosts if h["service_cpu_seconds"] is not None]
    if service:
        found["host_service"] = sum(service) / moved * per_second
    return found


def print_mode(run: ModeRun, n: int) -> None:
    f = run.figures
    print(f"  {run.mode:8s} slowest {f['slowest_s_over_b']:6.2f}  median "
          f"{f['median_s_over_b']:6.2f}  fastest {f['fastest_s_over_b']:6.2f}  S/B "
          f"(bound {f['expected_slowest_s_over_b']:g}, "
          f"{f['expected_slowest_s_over_b_on_wire']:.2f} with headers)   origin egress "
          f"{f['origin_egress_over_s']:5.2f} S   hosts sent {f['hosts_sent_over_s']:5.2f} S   "
          f"{'digests ok' if f['ok'] else 'FAILED: ' + failed(run)}")
    cores = "  ".join(f"{k} {v * 100:.0f} %" for k, v in f["cores_at_rate"].items())
    print(f"           first byte after at most {f['first_byte_max_s_over_b']:.2f}, "
          f"streaming at most {f['streaming_max_s_over_b']:.2f} S/B")
    print(f"           {f['slowest_seconds']:.1f} s; CPU: origin {f['origin_cores'] * 100:.0f} "
          f"% of a core, machine {f['machine_busy_cores'] * 100:.0f} % of one core "
          f"(of {os.cpu_count()}); per role at full B: {cores}")
    if f["machine_busy_cores"] > 0.9 * (os.cpu_count() or 1):
        print("           note: the machine's cores were saturated (this run or other work): "
              "times, and retransmitted bytes in the egress, measure the CPU, not the links")
    if links := f.get("links"):
        tenths = links["tenths"]
        print(f"           origin sent 99 % by {links['origin_99pct_sent_s_over_b']:.2f} S/B; "
              "link use per tenth of S/B, origin up / hosts down mean (min):")
        print("           " + " ".join(f"{r['origin_up']:.2f}/{r['hosts_down_mean']:.2f}"
                                       f"({r['hosts_down_min']:.2f})" for r in tenths[:16]))
    rss = [h["service_peak_rss_mib"] for h in run.hosts if h["service_peak_rss_mib"]]
    origin = f["origin_peak_rss_mib"]
    print(f"           peak RSS MiB: origin node {origin['origin_node'] or 0:.0f}, gateway "
          f"{origin['origin_gateway'] or 0:.0f}" + (f", host service max {max(rss):.0f}"
                                                     if rss else ""))


def keep_logs(work: Path, to: Path) -> None:
    """Copy the services' and clients' logs of a failed mode out of the work folder, which
    is removed at exit: a failure seen once in many runs must be readable afterwards."""
    to.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copy2(log, to / log.name)
    print(f"           logs of the failed mode: {to}")


def failed(run: ModeRun) -> str:
    return ", ".join(f"{h['host']} ({h['error'] or h['status']}, {h['bytes']} B)"
                     for h in run.hosts if not h["digest_ok"])


def chart(runs: list[ModeRun], n: int, rate_bit: int, origin_rate_bit: int, subtitle: str,
          path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5),
                                      gridspec_kw={"width_ratios": [3, 2]})
    for x, run in enumerate(runs):
        ys = sorted(h["s_over_b"] for h in run.hosts)
        # Spread the dots sideways a little so N equal times stay visible.
        xs = [x + (i - (len(ys) - 1) / 2) * 0.3 / max(len(ys), 1) for i in range(len(ys))]
        left.scatter(xs, ys, s=18, zorder=3, color=f"C{x}")
        left.hlines([run.figures["median_s_over_b"]], x - 0.25, x + 0.25, colors="black",
                    linewidth=1)
    # Without P2P the origin's link carries N·S: N·S/B when it is as fast as a host's.
    alone = max(1.0, n * rate_bit / origin_rate_bit)
    for level, label in ((1, "S/B (physical bound)"), (alone, f"N·S/B = {alone:g} (origin alone)")):
        left.axhline(level, color="grey", linestyle="--", linewidth=0.8)
        left.annotate(label, (-0.55, level), xytext=(0, -10), textcoords="offset points",
                      ha="left", fontsize=8, color="grey")
    left.set_xticks(range(len(runs)), [r.mode for r in runs])
    left.set_xlim(-0.6, len(runs) - 0.4)
    left.set_ylim(0, max(alone, *(h["s_over_b"] for r in runs for h in r.hosts)) * 1.15)
    left.set_ylabel("host completion time (multiples of S/B)")
    left.set_title("each dot a host; bar: median", fontsize=9)
    values = [r.figures["origin_egress_over_s"] for r in runs]
    bars = right.bar(range(len(runs)), values, color=[f"C{x}" for x in range(len(runs))])
    right.bar_label(bars, fmt="%.2f", fontsize=8)
    for level in (1, n):
        right.axhline(level, color="grey", linestyle="--", linewidth=0.8)
    right.set_xticks(range(len(runs)), [r.mode for r in runs])
    right.set_ylabel("origin egress (multiples of S)")
    right.set_ylim(0, max(n, *values) * 1.15)
    right.set_title("origin veth tx_bytes", fontsize=9)
    fig.suptitle(f"Fan-out of one blob to N hosts\n{subtitle}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    load_before = os.getloadavg()
    if load_before[0] > 0.5:
        print(f"note: load average {load_before[0]:.1f} before the run; other work on this "
              "machine can blur the figures")
    size = args.size_mib << 20
    unit = size * 8 / args.rate_bit
    print(f"N={args.hosts} hosts, S={args.size_mib} MiB, B={args.rate_bit / 1e6:g} Mbit/s: "
          f"S/B = {unit:.2f} s, N·S/B = {args.hosts * unit:.1f} s")
    blob = make_blob(work / "blob", size)
    topo = Topology(args.hosts, args.rate_bit, args.origin_rate_bit, fair=not args.shared_fifo,
                    ack_priority=not args.ack_fifo)
    atexit.register(topo.close)
    try:
        start = time.perf_counter()
        topo.build()
        print(f"  {args.hosts + 1} namespaces ({topo.prefix}*) in "
              f"{time.perf_counter() - start:.1f} s, links shaped to "
              f"{args.rate_bit / 1e6:g} Mbit/s both ways (origin's: "
              f"{args.origin_rate_bit / 1e6:g})")
        origin = start_origin(topo, work, args.origin_serve_limit)
        seconds = seed(topo, blob)
        print(f"  seeded {blob.digest[:19]}… into {REPO} in {seconds:.1f} s (unshaped, "
              "origin loopback)")
        qdiscs = topo.qdiscs()
        runs = []
        for mode in args.modes:
            runs.append(run_mode(mode, topo, origin, blob, work, args))
            print_mode(runs[-1], args.hosts)
            if not runs[-1].figures["ok"]:
                keep_logs(work, args.out / f"{args.name}-{mode}-logs")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop cleanup
        topo.close()
        signal.signal(signal.SIGINT, signal.default_int_handler)
    return {
        "hosts": args.hosts, "blob_bytes": size, "blob_digest": blob.digest,
        "rate_bit_per_s": args.rate_bit, "origin_rate_bit_per_s": args.origin_rate_bit,
        "s_over_b_seconds": unit,
        "seeding": "pushed through the origin's gateway on its own loopback (unshaped)",
        "shaping": "HTB at B on the egress of both veth ends of every link, origin "
                   "included, rates counting link-layer bytes; about 100 ms of byte FIFO "
                   + ("shared by all traffic (tail drop)" if args.shared_fifo else
                      "split into one class and FIFO per peer host, shared fairly")
                   + ("" if args.ack_fifo else "; on each host's own end, packets under "
                      "128 bytes (acknowledgements) first, as fq_codel serves sparse flows"),
        "egress_measure": "origin namespace eth0 tx_bytes (ip -s link), link layer",
        "modes": {r.mode: {**r.figures, "hosts": r.hosts} for r in runs},
        "qdiscs": qdiscs,
        "load_average_before_after": [load_before, os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }


def on_signal(signum: int, _: object) -> None:
    print(f"\n{signal.Signals(signum).name}: removing processes, namespaces and temp files",
          flush=True)
    sys.exit(128 + signum)


def parse_modes(value: str) -> list[str]:
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if unknown := [m for m in modes if m not in MODES]:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {unknown}; known: {MODES}")
    return modes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", "-N", type=int, default=8, help="pulling hosts (8)")
    parser.add_argument("--size-mib", "-S", type=int, default=256, help="blob size, MiB (256)")
    parser.add_argument("--rate-mbit", "-B", type=float, default=100.0,
                        help="link bandwidth of every host and the origin, Mbit/s (100)")
    parser.add_argument("--origin-rate-mbit", type=float, default=None,
                        help="the origin's link, Mbit/s (default: B); a fat origin loads "
                             "the machine as P2P would, N hosts each receiving at B")
    parser.add_argument("--shared-fifo", action="store_true",
                        help="one tail-drop FIFO per link instead of a fair share per peer")
    parser.add_argument("--ack-fifo", action="store_true",
                        help="acknowledgements queue behind data on each host's uplink "
                             "(the harness before 2026-12-06, session 8)")
    parser.add_argument("--modes", type=parse_modes, default=["p2p", "no-p2p"],
                        help=f"comma-separated, run in this order, from {','.join(MODES)} "
                             "(p2p,no-p2p)")
    parser.add_argument("--client-only", action="store_true",
                        help="modes direct,gateway: no `shoal edge` needed")
    parser.add_argument("--cache-size", type=int, default=None, metavar="BYTES",
                        help="passed to every `shoal edge` as --cache-size")
    parser.add_argument("--edge-upload-limit", type=int, default=None, metavar="BYTES",
                        help="passed to every `shoal edge` as --upload-limit (bytes/s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    parser.add_argument("--name", default="p2p_fanout", help="results file stem")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the blob, data folders and logs go (default: /tmp)")
    parser.add_argument("--keep-work", action="store_true",
                        help="keep the work folder (logs) after the run")
    parser.add_argument("--origin-serve-limit", type=int, default=None, metavar="N",
                        help="the origin node's --serve-limit (default: the node's)")
    parser.add_argument("--trace", action="store_true",
                        help="edges log every fetch (piece, source, times, outcome) to "
                        "their logs in the work folder; use with --keep-work")
    parser.add_argument("--clean-stale", action="store_true",
                        help="first delete shoalb-* namespaces left by runs that died")
    args = parser.parse_args()
    if args.client_only:
        args.modes = list(CLIENT_ONLY)
    args.rate_bit = int(args.rate_mbit * 1e6)
    args.origin_rate_bit = int((args.origin_rate_mbit or args.rate_mbit) * 1e6)
    if reason := netns.preflight():
        parser.error(reason)
    if (not 1 <= args.hosts <= netns.MAX_HOSTS or args.size_mib < 1
            or min(args.rate_bit, args.origin_rate_bit) < 10**5):
        parser.error(f"need 1 ≤ N ≤ {netns.MAX_HOSTS}, S ≥ 1 MiB, B ≥ 0.1 Mbit/s")
    if any(m in EDGE_MODES for m in args.modes) and (reason := edge_available()):
        parser.error(f"`shoal edge` cannot run here ({reason}); --client-only measures "
                     "with what exists today")
    stale = netns.stale_namespaces()
    if stale and args.clean_stale:
        for name in stale:
            netns.delete_namespace(name)
        print(f"removed {len(stale)} stale namespace(s)")
    elif stale:
        print(f"note: {len(stale)} namespace(s) from dead runs remain ({stale[0]} …); "
              "--clean-stale removes them")
    # SIGTERM and SIGHUP unwind like Ctrl-C, so the finally blocks remove everything.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with contextlib.ExitStack() as stack:
            if args.keep_work:
                work = Path(tempfile.mkdtemp(prefix="shoal-p2p-", dir=args.work_dir))
                print(f"work folder (kept): {work}")
            else:
                work = stack.enter_context(scratch_dir("p2p", args.work_dir))
            figures = run(args, work)
    except KeyboardInterrupt:
        print("\ninterrupted: processes, namespaces and temp files are removed")
        sys.exit(130)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    subtitle = (f"N={args.hosts}, S={args.size_mib} MiB, B={args.rate_mbit:g} Mbit/s "
                f"(S/B = {figures['s_over_b_seconds']:.1f} s)")
    runs = [ModeRun(m, v["hosts"], v) for m, v in figures["modes"].items()]
    png = chart(runs, args.hosts, args.rate_bit, args.origin_rate_bit, subtitle,
                args.out / f"{args.name}.png")
    print(f"results: {path}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
