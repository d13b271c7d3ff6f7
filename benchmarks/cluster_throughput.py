"""A cluster beside a single node, with real processes on loopback, in one run; then repair.

1. Throughput. The same payloads (C clients, each a distinct blob of S bytes, random so
   nothing compresses; --compressible adds a text-like round) go to two setups in turn:
     single:  one `shoal node` and G `shoal gateway --node` processes;
     cluster: N `shoal node --cluster` members (R copies, W acknowledged) and
              G `shoal gateway --cluster` processes.
   The clients push over HTTP through the gateways (POST an upload, PUT the whole blob,
   spread over the gateways), all at once; then all pull their blob back at once and
   check its SHA-256. HTTP through real gateways is what registry users see. The clients
   are threads of this process doing nothing but socket I/O and hashing (both release
   the GIL); every process's CPU seconds are recorded per phase, so the table shows
   whether the clients, the gateways or the nodes used the two cores.
   Disk: each member's data folder (allocated blocks) and its processes' write_bytes
   (/proc/PID/io) after the pushes, against the logical bytes: replication costs R x.
   Members run the shipped --repair-interval (10 s) meanwhile: every pass scans all the
   chunks a member holds, so a shorter one costs the writers (--push-repair-interval).
2. Repair, per --repair-rates (MB/s, `shoal node --repair-rate`; --repair-interval 1 s):
   the cluster is restarted with that rate and left to converge, then one member is
   killed with SIGKILL, its data folder wiped, and it is started again empty. The clock
   runs from the moment it serves again until `shoal status --cluster FILE --json` would
   exit 0 (the same code, polled in-process every 0.5 s so polling costs no interpreter
   start-ups on two cores; the CLI itself confirms at the end). The rate is the bytes
   the member stores again (its packs) over that time, in GB per minute.

    python -m benchmarks.cluster_throughput [--nodes 3] [-R 2] [-W 2] [--clients 4]
        [--mib 256] [--gateways 1] [--repair-rates 64,1000] [--push-repair-interval 10]
        [--compressible] [--out DIR]

Figures go to OUT/cluster_throughput.{json,png} (OUT: benchmarks/results).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, Process, folder_size, free_port, mb_per_s, pyplot
from node.cluster.config import ClusterConfig, Member, write
from shoal.status import show

HTTP_TIMEOUT = 600.0        # per socket operation; a stalled gateway fails the run
PIECE = 1 << 20
CONVERGE_TIMEOUT = 900.0
POLL = 0.5
STATUS_CLI_TIMEOUT = 60.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPAIR_INTERVAL = 1.0       # repair rounds: passes back to back, so cadence does not dominate


# -- processes ---------------------------------------------------------------------------------

def shoal(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoal", "--log-level", "WARNING", *args]


def http_ok(base: str, path: str = "/v2/") -> bool:
    parts = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=2.0)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        conn.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (its threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def write_bytes(pid: int) -> int:
    """Bytes the process caused to be sent to storage (/proc/PID/io)."""
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class NodeProc:
    name: str
    argv: list[str]
    data: Path
    port_file: Path
    log: Path
    proc: Process | None = None

    def start(self) -> None:
        self.port_file.unlink(missing_ok=True)
        self.proc = Process(self.name, self.argv, self.log)
        self.proc.wait_until(lambda: self.port_file.exists()
                             and bool(self.port_file.read_text().strip()),
                             f"serving ({self.port_file} written)")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.popen.wait(timeout=30)
        self.proc.stop()


@dataclass
class Setup:
    """One system under test: its nodes, its gateways, and (for a cluster) its file."""

    kind: str
    work: Path
    nodes: list[NodeProc] = field(default_factory=list)
    gateways: list[Process] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    config: ClusterConfig | None = None
    cluster_file: Path | None = None

    def processes(self) -> dict[str, int]:
        found = {n.name: n.pid for n in self.nodes if n.proc is not None and n.proc.alive()}
        found.update({g.name: g.pid for g in self.gateways if g.alive()})
        return found

    def start_gateways(self, count: int, store: list[str]) -> None:
        for i in range(count):
            port = free_port()
            gw = Process(f"gateway{i + 1}",
                         shoal("gateway", *store, "--listen", f"127.0.0.1:{port}"),
                         self.work / f"gateway{i + 1}.log")
            self.gateways.append(gw)
            base = f"http://127.0.0.1:{port}"
            gw.wait_until(lambda b=base: http_ok(b), f"answering on {base}")  # type: ignore[misc]
            self.bases.append(base)

    def stop_gateways(self) -> None:
        for gw in self.gateways:
            gw.stop()
        self.gateways.clear()
        self.bases.clear()

    def stop(self) -> None:
        self.stop_gateways()
        for node in self.nodes:
            node.stop()


def member_argv(setup: Setup, member: Member, data: Path, port_file: Path,
                rate: float, interval: float) -> list[str]:
    assert setup.cluster_file is not None
    return shoal("node", "--cluster", str(setup.cluster_file), "--id", member.id,
                 "--data", str(data), "--port-file", str(port_file),
                 "--repair-interval", f"{interval:g}", "--repair-rate", f"{rate:g}")


def start_single(work: Path, gateways: int) -> Setup:
    setup = Setup("single", work)
    work.mkdir(parents=True)
    port = free_port()
    node = NodeProc("node", shoal("node", "--data", str(work / "data"), "--listen",
                                  f"127.0.0.1:{port}", "--port-file", str(work / "port")),
                    work / "data", work / "port", work / "node.log")
    setup.nodes.append(node)
    node.start()
    setup.start_gateways(gateways, ["--node", f"127.0.0.1:{port}"])
    return setup


def start_cluster(work: Path, nodes: int, replicas: int, quorum: int, gateways: int,
                  rate: float, interval: float) -> Setup:
    setup = Setup("cluster", work)
    work.mkdir(parents=True)
    setup.config = ClusterConfig(
        tuple(Member(f"node{i}", f"127.0.0.1:{free_port()}") for i in range(1, nodes + 1)),
        replicas=replicas, write_quorum=quorum)
    setup.cluster_file = work / "cluster.toml"
    write(setup.cluster_file, setup.config)
    for m in setup.config.members:
        home = work / m.id
        home.mkdir()
        setup.nodes.append(NodeProc(m.id, member_argv(setup, m, home / "data", home / "port",
                                                      rate, interval),
                                    home / "data", home / "port", home / "node.log"))
    for node in setup.nodes:
        node.start()
    setup.start_gateways(gateways, ["--cluster", str(setup.cluster_file)])
    return setup


# -- clients -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Payload:
    repo: str
    data: bytes
    digest: str


def random_payload(size: int) -> bytes:
    return os.urandom(size)


def text_payload(size: int, seed: int) -> bytes:
    from benchmarks.node_throughput import text_data

    return b"".join(text_data(size, seed))[:size]


def connection(base: str) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                      timeout=HTTP_TIMEOUT, blocksize=PIECE)


def push(base: str, payload: Payload) -> None:
    """The OCI monolithic upload: POST a session, PUT the whole blob into it."""
    conn = connection(base)
    try:
        conn.request("POST", f"/v2/{payload.repo}/blobs/uploads/",
                     headers={"Content-Length": "0"})
        response = conn.getresponse()
        response.read()
        if response.status != 202:
            raise RuntimeError(f"POST upload to {base}: HTTP {response.status}")
        location = urllib.parse.urlsplit(response.getheader("Location", ""))
        target = (location.path + "?" + (location.query + "&" if location.query else "")
                  + "digest=" + urllib.parse.quote(payload.digest))
        conn.request("PUT", target, body=payload.data,
                     headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        text = response.read()
        if response.status != 201:
            raise RuntimeError(f"PUT upload to {base}: HTTP {response.status}: {text[:300]!r}")
    finally:
        conn.close()


def pull(base: str, payload: Payload) -> None:
    conn = connection(base)
    digester = hashlib.sha256()
    buffer = bytearray(PIECE)
    view = memoryview(buffer)
    received = 0
    try:
        conn.request("GET", f"/v2/{payload.repo}/blobs/{payload.digest}")
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"GET from {base}: HTTP {response.status}")
        while n := response.readinto(buffer):
            digester.update(view[:n])
            received += n
    finally:
        conn.close()
    if f"sha256:{digester.hexdigest()}" != payload.digest:
        raise RuntimeError(f"GET {payload.repo} from {base}: {received} bytes, wrong digest")


def concurrently(setup: Setup, action: Callable[[str, Payload], None],
                 payloads: list[Payload]) -> dict[str, Any]:
    """Every client at once (client i through gateway i mod G); wall time and CPU."""
    pids = setup.processes()
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    io_before = {name: write_bytes(pid) for name, pid in pids.items()}
    client_before = own_cpu_seconds()
    with ThreadPoolExecutor(len(payloads)) as pool:
        start = time.perf_counter()
        futures = [pool.submit(action, setup.bases[i % len(setup.bases)], p)
                   for i, p in enumerate(payloads)]
        for future in futures:
            future.result()
        seconds = time.perf_counter() - start
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu["clients"] = own_cpu_seconds() - client_before
    logical = sum(len(p.data) for p in payloads)
    return {"seconds": seconds, "bytes": logical, "mb_per_s": mb_per_s(logical, seconds),
            "cpu_seconds": cpu,
            "cpu_share_of_2_cores": sum(cpu.values()) / (seconds * (os.cpu_count() or 1)),
            "disk_write_bytes": {name: write_bytes(pid) - io_before[name]
                                 for name, pid in pids.items() if name in io_before}}


def cpu_by_role(cpu: dict[str, float]) -> dict[str, float]:
    roles: dict[str, float] = {}
    for name, seconds in cpu.items():
        role = "gateways" if name.startswith("gateway") else (
            "clients" if name == "clients" else "nodes")
        roles[role] = roles.get(role, 0.0) + seconds
    return roles


def throughput(setup: Setup, payloads: list[Payload]) -> dict[str, Any]:
    before = {n.name: folder_size(n.data) for n in setup.nodes}
    pushed = concurrently(setup, push, payloads)
    after = {n.name: folder_size(n.data) for n in setup.nodes}
    print(f"    push {pushed['mb_per_s']:7.1f} MB/s aggregate ({pushed['seconds']:.1f} s), "
          f"CPU s {_roles(pushed)}")
    pulled = concurrently(setup, pull, payloads)
    print(f"    pull {pulled['mb_per_s']:7.1f} MB/s aggregate ({pulled['seconds']:.1f} s), "
          f"CPU s {_roles(pulled)}; every digest checked")
    logical = pushed["bytes"]
    stored = sum(after[k] - before[k] for k in after)
    io_total = sum(v for k, v in pushed["disk_write_bytes"].items() if k.startswith("node"))
    print(f"    disk: data folders grew {stored / 1e6:.0f} MB "
          f"({stored / logical:.2f} x the {logical / 1e6:.0f} MB pushed); nodes wrote "
          f"{io_total / 1e6:.0f} MB ({io_total / logical:.2f} x)")
    return {"push": pushed, "pull": pulled, "logical_bytes": logical,
            "folder_growth_bytes": after | {"total": stored},
            "folder_growth_x_logical": stored / logical,
            "node_write_bytes_during_push": io_total,
            "node_write_x_logical": io_total / logical}


def _roles(phase: dict[str, Any]) -> str:
    return ", ".join(f"{role} {s:.1f}" for role, s in cpu_by_role(phase["cpu_seconds"]).items())


# -- repair ------------------------------------------------------------------------------------

async def status_json(config: ClusterConfig) -> tuple[int, dict[str, Any]]:
    """What `shoal status --cluster FILE --json` prints and its exit status, in-process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = await asyncio.wait_for(show(config, None, True), 30)
    return code, json.loads(out.getvalue())


def status_cli(cluster_file: Path) -> int:
    result = subprocess.run(shoal("status", "--cluster", str(cluster_file), "--json"),
                            capture_output=True, timeout=STATUS_CLI_TIMEOUT,
                            stdin=subprocess.DEVNULL)
    return result.returncode


def member(report: dict[str, Any], member_id: str) -> dict[str, Any]:
    return next(m for m in report["members"] if m["id"] == member_id)


async def converge(config: ClusterConfig, watch: str | None = None, since_ms: int = 0,
                   start: float | None = None, timeline: list[tuple[float, int]] | None = None
                   ) -> tuple[float, dict[str, Any], float]:
    """Poll until converged: seconds taken, the final report, and when `watch`'s
    pack bytes last grew (seconds from `start`, a perf_counter reading; default now).

    With `since_ms` (wall clock), converged also needs every member to have finished a
    pass that began after that moment. `shoal status` alone can say converged at once
    after a member is wiped and restarted: the survivors' last passes began with every
    member up and found nothing short, so they count until the next ones end (see the
    README's cluster benchmark notes)."""
    start = time.perf_counter() if start is None else start
    last_growth = 0.0
    packs = -1
    # Per member: the end of its first pass seen ending after since_ms; a pass that ends
    # later began after it.
    first_end: dict[str, int] = {}
    while True:
        code, report = await status_json(config)
        now = time.perf_counter() - start
        if watch is not None:
            found = member(report, watch)
            if found.get("pack_bytes", 0) != packs:
                packs = found.get("pack_bytes", 0)
                last_growth = now
            if timeline is not None:
                timeline.append((round(now, 2), packs))
        fresh = True
        for m in report["members"]:
            ended = m.get("last_repair_ms", 0)
            if ended > since_ms:
                first_end.setdefault(m["id"], ended)
            fresh = fresh and ended > first_end.get(m["id"], sys.maxsize)
        if code == 0 and (since_ms == 0 or fresh):
            return now, report, last_growth
        if now > CONVERGE_TIMEOUT:
            raise RuntimeError(f"never converged in {CONVERGE_TIMEOUT:.0f} s: "
                               f"{json.dumps(report)[:2000]}")
        await asyncio.sleep(POLL)


async def repair_round(setup: Setup, rate: float, victim_id: str) -> dict[str, Any]:
    assert setup.config is not None and setup.cluster_file is not None
    config = setup.config
    # Every member takes --repair-rate at start: restart them all (data kept) with it.
    for node in setup.nodes:
        node.stop()
        m = config.member(node.name)
        node.argv = member_argv(setup, m, node.data, node.port_file, rate, REPAIR_INTERVAL)
    for node in setup.nodes:
        await asyncio.to_thread(node.start)
    settle, _, _ = await converge(config)
    _, before = await status_json(config)
    victim = next(n for n in setup.nodes if n.name == victim_id)
    held = member(before, victim_id)["pack_bytes"]
    killed = time.perf_counter()
    victim.kill()
    shutil.rmtree(victim.data)
    await asyncio.to_thread(victim.start)
    serving = time.perf_counter()
    serving_ms = int(time.time() * 1000)
    # What an operator polling `shoal status` sees first (0 here is the false positive).
    first_code, _ = await status_json(config)
    timeline: list[tuple[float, int]] = []
    seconds, report, moved = await converge(config, watch=victim_id, since_ms=serving_ms,
                                            start=serving, timeline=timeline)
    cli = await asyncio.to_thread(status_cli, setup.cluster_file)
    got = member(report, victim_id)
    received = got["pack_bytes"]
    sent = sum(member(report, m.id).get("repaired_bytes", 0)
               - member(before, m.id).get("repaired_bytes", 0)
               for m in config.members if m.id != victim_id)
    figures = {
        "repair_rate_mb_per_s": rate, "victim": victim_id,
        "victim_pack_bytes_before": held, "received_bytes": received,
        "victim_chunks_before": member(before, victim_id)["chunks"],
        "victim_blobs_before": member(before, victim_id)["blobs"],
        "received_chunks": got["chunks"], "received_blobs": got["blobs"],
        "survivors_repaired_bytes": sent,
        "kill_to_serving_seconds": serving - killed,
        "seconds_to_converged": seconds, "seconds_until_last_byte": moved,
        "gb_per_minute": received / 1e9 / (seconds / 60),
        "gb_per_minute_transfer": received / 1e9 / (moved / 60) if moved else None,
        "status_cli_exit": cli, "settle_seconds_before": settle,
        "status_exit_right_after_restart": first_code,
        "victim_pack_bytes_timeline": timeline,
    }
    print(f"    --repair-rate {rate:g}: {received / 1e6:.0f} MB back on {victim_id} in "
          f"{seconds:.1f} s to converged = {figures['gb_per_minute']:.2f} GB/min "
          f"(last byte at {moved:.1f} s); survivors sent {sent / 1e6:.0f} MB; "
          f"shoal status exit {cli}")
    return figures


# -- the run -----------------------------------------------------------------------------------

def make_payloads(clients: int, size: int, kind: str) -> list[Payload]:
    payloads = []
    for i in range(clients):
        data = random_payload(size) if kind == "random" else text_payload(size, i + 1)
        payloads.append(Payload(f"bench/{kind}-{i}", data,
                                "sha256:" + hashlib.sha256(data).hexdigest()))
    return payloads


async def run(args: argparse.Namespace, work: Path, setups: list[Setup]) -> dict[str, Any]:
    size = args.mib << 20
    kinds = ["random", "text"] if args.compressible else ["random"]
    load = os.getloadavg()
    if load[0] > 0.5:
        print(f"note: load average {load[0]:.1f} before the run; other work on this "
              "machine will blur the figures")
    figures: dict[str, Any] = {
        "nodes": args.nodes, "replicas": args.replicas, "write_quorum": args.write_quorum,
        "clients": args.clients, "bytes_per_client": size, "gateways": args.gateways,
        "repair_interval_during_throughput_s": args.push_repair_interval,
        "repair_interval_during_repair_s": REPAIR_INTERVAL,
        "client": "HTTP through shoal gateway processes (OCI monolithic upload, GET)",
        "cpus": os.cpu_count(), "load_average_before": load, "throughput": {}}
    payloads = {kind: make_payloads(args.clients, size, kind) for kind in kinds}
    print(f"{args.clients} clients x {args.mib} MiB through {args.gateways} gateway(s)")
    for kind in ("single", "cluster"):
        print(f"  {kind}" + (f": {args.nodes} nodes, R={args.replicas}, W={args.write_quorum}"
                             if kind == "cluster" else ": one node"))
        if kind == "single":
            setup = start_single(work / "single", args.gateways)
        else:
            setup = start_cluster(work / "cluster", args.nodes, args.replicas,
                                  args.write_quorum, args.gateways, args.repair_rates[0],
                                  args.push_repair_interval)
        setups.append(setup)
        for data_kind in kinds:
            print(f"   {data_kind} data")
            figures["throughput"].setdefault(data_kind, {})[kind] = await asyncio.to_thread(
                throughput, setup, payloads[data_kind])
        if kind == "single":
            setup.stop()
    for data_kind in kinds:
        entry = figures["throughput"][data_kind]
        entry["ratio"] = {phase: entry["cluster"][phase]["mb_per_s"]
                          / entry["single"][phase]["mb_per_s"] for phase in ("push", "pull")}
    cluster = setups[-1]
    cluster.stop_gateways()  # idle, but repair gets the cores to itself
    print(f"  repair: kill -9 {args.victim}, wipe its data, restart it empty")
    figures["repair"] = [await repair_round(cluster, rate, args.victim)
                         for rate in args.repair_rates]
    figures["load_average_after"] = os.getloadavg()
    figures["shoal_commit"] = _commit()
    print_table(figures)
    return figures


def _commit() -> str:
    repo = Path(__file__).resolve().parent.parent
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
    return ""


def server_cpu_per_gb(phase: dict[str, Any]) -> float:
    """CPU seconds of the nodes and gateways per GB the clients moved."""
    server = sum(s for name, s in phase["cpu_seconds"].items() if name != "clients")
    return float(server / (phase["bytes"] / 1e9))


def print_table(figures: dict[str, Any]) -> None:
    print()
    # CPU per GB moved holds up when other work shares the cores; MB/s does not.
    print(f"  {'data':7s} {'phase':5s} {'single MB/s':>12s} {'cluster MB/s':>13s} "
          f"{'cluster÷single':>15s} {'server CPU s/GB single':>23s} {'cluster':>8s}")
    for kind, entry in figures["throughput"].items():
        for phase in ("push", "pull"):
            cost = [server_cpu_per_gb(entry[setup][phase]) for setup in ("single", "cluster")]
            print(f"  {kind:7s} {phase:5s} {entry['single'][phase]['mb_per_s']:12.1f} "
                  f"{entry['cluster'][phase]['mb_per_s']:13.1f} "
                  f"{entry['ratio'][phase]:14.2f}x {cost[0]:23.1f} {cost[1]:8.1f}")
    print()
    print(f"  {'data':7s} {'setup':8s} {'folders grew':>13s} {'x logical':>10s} "
          f"{'node writes':>12s} {'x logical':>10s}")
    for kind, entry in figures["throughput"].items():
        for setup in ("single", "cluster"):
            e = entry[setup]
            print(f"  {kind:7s} {setup:8s} {e['folder_growth_bytes']['total'] / 1e6:10.0f} MB "
                  f"{e['folder_growth_x_logical']:9.2f}x "
                  f"{e['node_write_bytes_during_push'] / 1e6:9.0f} MB "
                  f"{e['node_write_x_logical']:9.2f}x")
    print()
    print(f"  {'repair rate':>12s} {'received':>10s} {'to converged':>13s} {'GB/min':>7s} "
          f"{'last byte':>10s} {'GB/min':>7s}")
    for r in figures["repair"]:
        transfer = r["gb_per_minute_transfer"]
        print(f"  {r['repair_rate_mb_per_s']:7g} MB/s {r['received_bytes'] / 1e6:7.0f} MB "
              f"{r['seconds_to_converged']:11.1f} s {r['gb_per_minute']:7.2f} "
              f"{r['seconds_until_last_byte']:8.1f} s "
              f"{transfer if transfer is not None else float('nan'):7.2f}")


def chart(figures: dict[str, Any], path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5),
                                      gridspec_kw={"width_ratios": [2, 1]})
    labels, single, cluster = [], [], []
    for kind, entry in figures["throughput"].items():
        for phase in ("push", "pull"):
            labels.append(f"{phase}\n{kind}")
            single.append(entry["single"][phase]["mb_per_s"])
            cluster.append(entry["cluster"][phase]["mb_per_s"])
    xs = range(len(labels))
    width = 0.38
    for offset, values, label, colour in (
            (-width / 2, single, "single node", "#aaaaaa"),
            (width / 2, cluster, f"{figures['nodes']} nodes, R={figures['replicas']}, "
                                 f"W={figures['write_quorum']}", "#1f77b4")):
        bars = left.bar([x + offset for x in xs], values, width, label=label, color=colour)
        left.bar_label(bars, fmt="%.0f", fontsize=8)
    left.set_xticks(list(xs), labels)
    left.set_ylabel("MB/s aggregate")
    left.set_title(f"{figures['clients']} clients x {figures['bytes_per_client'] >> 20} MiB, "
                   f"HTTP via {figures['gateways']} gateway(s)", fontsize=10)
    left.margins(y=0.15)
    left.legend(fontsize=8)
    rates = [f"{r['repair_rate_mb_per_s']:g} MB/s" for r in figures["repair"]]
    values = [r["gb_per_minute"] for r in figures["repair"]]
    bars = right.bar(rates, values, color="#2ca02c")
    right.bar_label(bars, fmt="%.2f", fontsize=8)
    right.set_xlabel("--repair-rate")
    right.set_ylabel("GB re-replicated per minute")
    right.set_title("repair of a wiped member", fontsize=10)
    right.margins(y=0.15)
    fig.suptitle(f"Shoal cluster on one {figures['cpus']}-core machine, loopback", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


@contextlib.contextmanager
def scratch(parent: Path | None) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shoal-cbench-", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _rates(value: str) -> list[float]:
    try:
        rates = [float(v) for v in value.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MB/s values like 64,1000: {value!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError("repair rates must be positive")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=3, help="cluster members (3)")
    parser.add_argument("-R", "--replicas", type=int, default=2, help="copies (2)")
    parser.add_argument("-W", "--write-quorum", type=int, default=None, help="W (R)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (4)")
    parser.add_argument("--mib", type=int, default=256, help="MiB each client pushes (256)")
    parser.add_argument("--gateways", type=int, default=1, help="gateways per setup (1)")
    parser.add_argument("--repair-rates", type=_rates, default=[64.0, 1000.0],
                        help="--repair-rate of each repair round, MB/s (64,1000)")
    parser.add_argument("--push-repair-interval", type=float, default=10.0, metavar="S",
                        help="members' --repair-interval while clients push and pull "
                             "(10, the shipped default; every pass scans all chunks)")
    parser.add_argument("--victim", default="", help="member to wipe (the last one)")
    parser.add_argument("--compressible", action="store_true",
                        help="also a round of text-like data that zstd shrinks")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where node data goes (default: a temp dir under /tmp)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args()
    args.write_quorum = args.write_quorum or args.replicas
    args.victim = args.victim or f"node{args.nodes}"
    if not 1 <= args.write_quorum <= args.replicas <= args.nodes:
        parser.error("need 1 <= W <= R <= nodes")
    # SIGTERM unwinds like Ctrl-C, so every process and temp dir is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    setups: list[Setup] = []
    try:
        with scratch(args.work_dir) as work:
            try:
                figures = asyncio.run(run(args, work, setups))
            finally:
                for setup in setups:
                    setup.stop()
    except KeyboardInterrupt:
        print("\ninterrupted: every process is stopped and the temp dir removed")
        sys.exit(130)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "cluster_throughput.json"
    path.write_text(json.dumps(figures, indent=2) + "\n")
    png = chart(figures, args.out / "cluster_throughput.png")
    print(f"results: {path}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
