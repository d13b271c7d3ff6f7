"""Shoal beside the CNCF reference registry (distribution 2.x), with real clients, in one run.

Starts both registries on loopback (`shoal serve` and `docker-registry serve`, filesystem
storage with deletes enabled), each on its own empty temp data folder, writes one test image
as an OCI layout (--mib of gzip layers of random data), then, R times each, alternating
which registry goes first:
  1. skopeo push   oci:LAYOUT -> docker://HOST/bench/img-N; every push goes to a registry
                   restarted on an empty data folder, so no blob is ever already there;
  2. skopeo pull   docker://HOST/bench/img-N -> a fresh oci: directory;
  3. docker pull   into a private dockerd (vfs storage: extraction is a slow full copy per
                   layer, the same for both), `docker rmi` after each;
  4. raw GET       curl of the largest layer blob to /dev/null.
Throughput is image bytes (manifest + config + layers; the blob alone for raw GET) over the
wall time of the client command, median of R. Each registry's RSS is sampled every 50 ms
during the pull phases (and VmHWM, reset before them). Pulled layer digests and docker's
diff_ids are checked against the pushed image. With --profile, one extra, untimed round
of every phase runs against Shoal with py-spy attached, and its hottest frames are listed.

    python -m benchmarks.registry_compare [--mib 1024 | --quick] [--reps 3] [--profile]

Figures go to benchmarks/results/registry_compare.{json,png} (registry_compare_quick.* with
--quick); py-spy's raw stacks to benchmarks/results/registry_compare_profile/.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS, mb_per_s, peak_rss_mib, pyplot, save
from benchmarks.registry_image import TestImage, build_image, file_digest, layout_layer_digests
from benchmarks.registry_profile import py_spy, py_spy_binary, summarise
from benchmarks.registry_servers import (
    Docker,
    Registry,
    RssSampler,
    docker_daemon,
    registry,
    remove_tree,
    reset_peak_rss,
    scratch_dir,
)

PHASES = ("skopeo_push", "skopeo_pull", "docker_pull", "raw_get")
TITLES = {"skopeo_push": "skopeo push", "skopeo_pull": "skopeo pull",
          "docker_pull": "docker pull", "raw_get": "raw blob GET"}
TARGET_RATIO = {"skopeo_push": 1.5, "skopeo_pull": 1.2, "docker_pull": 1.2, "raw_get": 1.0}
TARGET_RSS_MIB = 150.0
KINDS = ("shoal", "reference")
PULL_PHASES = PHASES[1:]
PROFILE_GETS = 20  # one GET is too short for py-spy to see much


class Skopeo:
    """skopeo with a private policy, auth file and temp dir."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True)
        (root / "policy.json").write_text(
            json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        (root / "auth.json").write_text('{"auths": {}}')
        (root / "tmp").mkdir()
        self.policy = root / "policy.json"
        self.env = {"REGISTRY_AUTH_FILE": str(root / "auth.json"), "TMPDIR": str(root / "tmp")}

    def copy(self, source: str, dest: str) -> None:
        argv = ["skopeo", "--policy", str(self.policy), "copy", "--quiet",
                "--src-tls-verify=false", "--dest-tls-verify=false", source, dest]
        _run(argv, self.env)


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, env={**os.environ, **(env or {})}, capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=3600)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}")
    return result.stdout


def timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def against(reg: Registry, action: Callable[[], float]) -> float:
    """Run one client round; when it fails because the registry died, say so."""
    reg.check_alive()
    try:
        return action()
    except (RuntimeError, AssertionError, OSError) as error:
        reg.check_alive()
        raise error


class Bench:
    """The state of one run: the image, both registries, the clients, the figures."""

    def __init__(self, args: argparse.Namespace, work: Path, image: TestImage,
                 registries: dict[str, Registry]) -> None:
        self.args = args
        self.work = work
        self.image = image
        self.registries = registries
        self.skopeo = Skopeo(work / "skopeo")
        self.seconds: dict[str, dict[str, list[float]]] = {
            p: {k: [] for k in KINDS} for p in PHASES}
        # phase -> registry kind -> {"rss", "anon", "file"} -> peak MiB sampled
        self.rss_mib: dict[str, dict[str, dict[str, float]]] = {p: {} for p in PHASES}
        self.notes: list[str] = []
        self.repo = ""

    def order(self, rep: int) -> list[Registry]:
        kinds = KINDS if rep % 2 == 0 else KINDS[::-1]
        return [self.registries[k] for k in kinds]

    def ref(self, reg: Registry, repo: str | None = None) -> str:
        return f"{reg.address}/{repo or self.repo}:{self.image.tag}"

    def record(self, phase: str, reg: Registry, rep: int, seconds: float,
               sampler: RssSampler, nbytes: int) -> None:
        self.seconds[phase][reg.kind].append(seconds)
        parts = self.rss_mib[phase].setdefault(reg.kind, {})
        for part, mib in sampler.peaks_mib.items():
            parts[part] = max(parts.get(part, 0.0), mib)
        print(f"    {TITLES[phase]:12s} {reg.label:9s} rep {rep + 1}: {seconds:7.2f} s "
              f"{mb_per_s(nbytes, seconds):8.1f} MB/s   RSS peak {sampler.peak_mib:6.0f} MiB")

    # -- the phases ------------------------------------------------------------------------

    def push_once(self, reg: Registry, repo: str) -> float:
        source = f"oci:{self.image.layout}:{self.image.tag}"
        return timed(lambda: self.skopeo.copy(source, f"docker://{self.ref(reg, repo)}"))

    def skopeo_push(self, rep: int) -> None:
        repo = f"bench/img-{rep}"
        for reg in self.order(rep):
            if rep > 0:
                reg.restart_empty()
            with RssSampler(reg.pid) as sampler:
                seconds = against(reg, partial(self.push_once, reg, repo))
            self.record("skopeo_push", reg, rep, seconds, sampler, self.image.total_bytes)
        self.repo = repo

    def skopeo_pull_once(self, reg: Registry, rep: int) -> float:
        out = self.work / f"pull-{reg.kind}-{rep}"
        try:
            seconds = timed(lambda: self.skopeo.copy(f"docker://{self.ref(reg)}",
                                                     f"oci:{out}:{self.image.tag}"))
            self.verify_layout(out, reg)
        finally:
            remove_tree(out)
        return seconds

    def verify_layout(self, out: Path, reg: Registry) -> None:
        pulled = layout_layer_digests(out, self.image.tag)
        if pulled != self.image.layer_digests:
            raise AssertionError(f"{reg.label}: skopeo pulled layers {pulled}, "
                                 f"pushed {self.image.layer_digests}")
        for digest in pulled:
            if file_digest(out / "blobs" / "sha256" / digest.split(":")[1]) != digest:
                raise AssertionError(f"{reg.label}: pulled blob {digest} has other content")

    def docker_pull_once(self, docker: Docker, reg: Registry) -> float:
        ref = self.ref(reg)

        def pull() -> None:
            docker("pull", "--quiet", ref)

        seconds = timed(pull)
        try:
            layers = json.loads(docker("image", "inspect", "--format",
                                       "{{json .RootFS.Layers}}", ref).stdout)
            diff_ids = [layer.diff_id for layer in self.image.layers]
            if layers != diff_ids:
                raise AssertionError(f"{reg.label}: docker has layers {layers}, "
                                     f"the image's diff_ids are {diff_ids}")
        finally:
            docker("rmi", "--force", ref, check=False)
        return seconds

    def raw_get_once(self, reg: Registry) -> float:
        blob = self.image.largest_layer
        url = f"http://{reg.address}/v2/{self.repo}/blobs/{blob.digest}"
        out = _run(["curl", "-s", "-L", "-o", "/dev/null", "-w",
                    "%{http_code} %{size_download} %{time_total}", url])
        code, size, seconds = out.split()
        if code != "200" or int(size) != blob.size:
            raise AssertionError(f"{reg.label}: GET {url} gave {code}, {size} bytes")
        return float(seconds)

    def verify_raw_get(self, reg: Registry) -> None:
        blob = self.image.largest_layer
        url = f"http://{reg.address}/v2/{self.repo}/blobs/{blob.digest}"
        digester = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=60) as response:
            while piece := response.read(1 << 20):
                digester.update(piece)
        if "sha256:" + digester.hexdigest() != blob.digest:
            raise AssertionError(f"{reg.label}: GET {url} served other content")

    def pull_phase(self, phase: str, once: Callable[[Registry, int], float],
                   nbytes: int) -> None:
        for rep in range(self.args.reps):
            for reg in self.order(rep):
                with RssSampler(reg.pid) as sampler:
                    seconds = against(reg, partial(once, reg, rep))
                self.record(phase, reg, rep, seconds, sampler, nbytes)

    def run_pulls(self, docker: Docker | None) -> None:
        total = self.image.total_bytes
        print("  skopeo pull")
        self.pull_phase("skopeo_pull", self.skopeo_pull_once, total)
        if docker is not None:
            print("  docker pull (vfs storage: includes a slow full-copy extraction)")
            self.pull_phase("docker_pull", lambda reg, _: self.docker_pull_once(docker, reg),
                            total)
        print("  raw blob GET")
        for reg in self.registries.values():
            self.verify_raw_get(reg)
        self.pull_phase("raw_get", lambda reg, _: self.raw_get_once(reg),
                        self.image.largest_layer.size)

    # -- profiling -------------------------------------------------------------------------

    def profile(self, docker: Docker | None) -> dict[str, Any]:
        """One more, untimed round of every phase against Shoal, with py-spy attached."""
        reg = self.registries["shoal"]
        folder = RESULTS / "registry_compare_profile"
        folder.mkdir(parents=True, exist_ok=True)
        reg.restart_empty()
        self.repo = "bench/profile"
        rounds: dict[str, Callable[[], float]] = {
            "skopeo_push": lambda: self.push_once(reg, self.repo),
            "skopeo_pull": lambda: self.skopeo_pull_once(reg, 99),
            "raw_get": lambda: sum(self.raw_get_once(reg) for _ in range(PROFILE_GETS)),
        }
        if docker is not None:
            rounds["docker_pull"] = lambda: self.docker_pull_once(docker, reg)
        found: dict[str, Any] = {}
        for phase in PHASES:
            if phase not in rounds:
                continue
            raw = folder / f"{phase}.txt"
            with py_spy(reg.pid, raw):
                seconds = rounds[phase]()
            found[phase] = {"seconds_under_py_spy": seconds, "raw": str(raw), **summarise(raw)}
        return found

    # -- figures ---------------------------------------------------------------------------

    def figures(self) -> dict[str, Any]:
        phases: dict[str, Any] = {}
        for phase in PHASES:
            nbytes = (self.image.largest_layer.size if phase == "raw_get"
                      else self.image.total_bytes)
            entry: dict[str, Any] = {"bytes": nbytes}
            for kind in KINDS:
                runs = self.seconds[phase][kind]
                if runs:
                    entry[kind] = {"seconds": runs,
                                   "median_seconds": statistics.median(runs),
                                   "mb_per_s": mb_per_s(nbytes, statistics.median(runs))}
                if kind in self.rss_mib[phase]:
                    entry.setdefault("rss_peak_mib", {})[kind] = self.rss_mib[phase][kind]
            if "shoal" in entry and "reference" in entry:
                ratio = entry["shoal"]["mb_per_s"] / entry["reference"]["mb_per_s"]
                entry["ratio"] = ratio
                entry["target_ratio"] = TARGET_RATIO[phase]
                entry["met"] = ratio >= TARGET_RATIO[phase]
            phases[phase] = entry
        return phases


def print_table(phases: dict[str, Any], rss: dict[str, Any]) -> None:
    print()
    print(f"  {'phase':14s} {'Shoal MB/s':>11s} {'ref MB/s':>10s} {'Shoal÷ref':>10s} "
          f"{'target':>7s}  met")
    for phase in PHASES:
        entry = phases[phase]
        if "ratio" not in entry:
            print(f"  {TITLES[phase]:14s} {'skipped':>11s}")
            continue
        print(f"  {TITLES[phase]:14s} {entry['shoal']['mb_per_s']:11.1f} "
              f"{entry['reference']['mb_per_s']:10.1f} {entry['ratio']:9.2f}x "
              f"{entry['target_ratio']:6.1f}x  {'yes' if entry['met'] else 'NO'}")
    print()
    print(f"  {'peak RSS (MiB)':22s} {'Shoal':>8s} {'reference':>10s}")
    for key, label in (("push_hwm", "push (VmHWM)"), ("pull_sampled", "pulls (VmRSS/50 ms)"),
                       ("pull_sampled_anon", "  of it RssAnon"),
                       ("pull_sampled_file", "  of it RssFile"),
                       ("pull_hwm", "pulls (VmHWM)")):
        values = rss.get(key, {})
        print(f"  {label:22s} {values.get('shoal', float('nan')):8.0f} "
              f"{values.get('reference', float('nan')):10.0f}")
    shoal_pull = max(rss.get("pull_sampled", {}).get("shoal", 0.0),
                     rss.get("pull_hwm", {}).get("shoal", 0.0))
    print(f"  Shoal RSS during pulls ≤ {TARGET_RSS_MIB:.0f} MiB: "
          f"{'yes' if shoal_pull <= TARGET_RSS_MIB else 'NO'} ({shoal_pull:.0f} MiB)")


def chart(phases: dict[str, Any], path: Path, subtitle: str) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    shown = [p for p in PHASES if "ratio" in phases[p]]
    xs = range(len(shown))
    width = 0.38
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for offset, kind, label, colour in ((-width / 2, "shoal", "Shoal", "#1f77b4"),
                                        (width / 2, "reference", "reference (distribution)",
                                         "#aaaaaa")):
        values = [phases[p][kind]["mb_per_s"] for p in shown]
        bars = ax.bar([x + offset for x in xs], values, width, label=label, color=colour)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    for x, phase in zip(xs, shown, strict=True):
        top = max(phases[phase]["shoal"]["mb_per_s"], phases[phase]["reference"]["mb_per_s"])
        ax.annotate(f"{phases[phase]['ratio']:.2f}x", (x, top), xytext=(0, 14),
                    textcoords="offset points", ha="center", fontsize=9, weight="bold")
    ax.set_xticks(list(xs), [TITLES[p] for p in shown])
    ax.set_ylabel("MB/s (median)")
    ax.set_title(f"Shoal vs reference registry on loopback\n{subtitle}", fontsize=10)
    ax.margins(y=0.2)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def start_docker(stack: contextlib.ExitStack, enabled: bool, notes: list[str]) -> Docker | None:
    """A private dockerd for the rest of the run, or None (and why) when it cannot run."""
    if not enabled:
        notes.append("docker pull skipped: --no-docker")
        return None
    try:
        return stack.enter_context(docker_daemon())
    except Exception as error:  # any failure to start dockerd only skips its phase
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"  docker pull skipped: dockerd could not run: {reason}")
        notes.append(f"docker pull skipped: {reason}")
        return None


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    size = args.mib << 20
    load_before = os.getloadavg()
    versions_before = versions()
    if load_before[0] > 0.5:
        print(f"note: load average {load_before[0]:.1f} before the run; other work on this "
              "machine will blur the figures")
    print(f"building a {args.mib} MiB test image in {args.layers} layers ...", flush=True)
    start = time.perf_counter()
    image = build_image(work / "layout", size, layers=args.layers, level=args.gzip_level)
    print(f"  {image.total_bytes / 1e6:.0f} MB in {time.perf_counter() - start:.0f} s, "
          f"largest layer {image.largest_layer.size / 1e6:.0f} MB")
    with contextlib.ExitStack() as stack:
        registries = {kind: stack.enter_context(registry(kind)) for kind in KINDS}
        bench = Bench(args, work, image, registries)
        print(f"Shoal on {registries['shoal'].address}, "
              f"reference on {registries['reference'].address}")
        print("  skopeo push (each push into a registry restarted on an empty data folder)")
        rss: dict[str, dict[str, float]] = {"push_hwm": {}, "pull_sampled": {}, "pull_hwm": {}}
        for rep in range(args.reps):
            bench.skopeo_push(rep)
            for reg in registries.values():
                hwm = peak_rss_mib(reg.pid)
                rss["push_hwm"][reg.kind] = max(rss["push_hwm"].get(reg.kind, 0.0), hwm)
        reset = all(reset_peak_rss(reg.pid) for reg in registries.values())
        docker = start_docker(stack, not args.no_docker, bench.notes)
        bench.run_pulls(docker)
        for reg in registries.values():
            for part, key in (("rss", "pull_sampled"), ("anon", "pull_sampled_anon"),
                              ("file", "pull_sampled_file")):
                rss.setdefault(key, {})[reg.kind] = max(
                    bench.rss_mib[p].get(reg.kind, {}).get(part, 0.0) for p in PULL_PHASES)
            if reset:
                rss["pull_hwm"][reg.kind] = peak_rss_mib(reg.pid)
        phases = bench.figures()
        profile = bench.profile(docker) if args.profile else None
    figures: dict[str, Any] = {
        "image": {"mib_requested": args.mib, "bytes": image.total_bytes,
                  "layers": len(image.layers), "gzip_level": args.gzip_level,
                  "largest_layer_bytes": image.largest_layer.size,
                  "manifest": image.manifest.digest},
        "reps": args.reps,
        "push_freshness": "each push goes to a registry restarted on an empty data folder, "
                          "under a new repository name (bench/img-N)",
        "docker_storage_driver": "vfs",
        "phases": phases,
        "rss_mib": rss,
        "rss_target_mib": TARGET_RSS_MIB,
        "notes": bench.notes,
        "load_average_before_after": [load_before, os.getloadavg()],
        "versions": versions_before,
    }
    if versions().get("shoal_commit") != versions_before.get("shoal_commit"):
        bench.notes.append("Shoal's commit changed during the run: figures mix versions")
        print(f"note: {bench.notes[-1]}")
    print_table(phases, rss)
    if profile is not None:
        figures["profile"] = profile
        print_profile(profile)
    return figures


def print_profile(profile: dict[str, Any]) -> None:
    print("\nShoal under py-spy --gil (one untimed round per phase): hottest leaf frames")
    for phase, found in profile.items():
        print(f"  {TITLES[phase]} ({found['samples']} samples, "
              f"{found['seconds_under_py_spy']:.1f} s):")
        for row in found["leaf"][:8]:
            print(f"    {row['share'] * 100:5.1f}%  {row['frame']}")
        print("    Shoal's own frames, inclusive:")
        for row in found["shoal_inclusive"][:6]:
            print(f"    {row['share'] * 100:5.1f}%  {row['frame']}")


def versions() -> dict[str, str]:
    found = {}
    for name, argv in (("skopeo", ["skopeo", "--version"]),
                       ("docker-registry", ["/usr/bin/docker-registry", "--version"]),
                       ("dockerd", ["dockerd", "--version"]), ("curl", ["curl", "--version"])):
        with contextlib.suppress(OSError, RuntimeError):
            found[name] = _run(argv).splitlines()[0]
    found["python"] = sys.version.split()[0]
    # Shoal's code as the registry processes imported it (the tree can move under a run).
    repo = Path(__file__).resolve().parent.parent
    with contextlib.suppress(OSError, RuntimeError):
        found["shoal_commit"] = _run(["git", "-C", str(repo), "rev-parse", "HEAD"]).strip()
        dirty = _run(["git", "-C", str(repo), "status", "--porcelain", "node", "gateway",
                      "shoal"]).strip()
        found["shoal_tree"] = "modified" if dirty else "clean"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024, help="image size in MiB (1024)")
    parser.add_argument("--quick", action="store_true", help="a 128 MiB image")
    parser.add_argument("--layers", type=int, default=8, help="number of layers (8)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per phase (3)")
    parser.add_argument("--gzip-level", type=int, default=1, help="gzip level of layers (1)")
    parser.add_argument("--no-docker", action="store_true", help="skip the docker pull phase")
    parser.add_argument("--profile", action="store_true",
                        help="also run each phase once against Shoal under py-spy")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the image, pulls and registry data go (default: /tmp)")
    args = parser.parse_args()
    if args.quick:
        args.mib = 128
    if args.profile and py_spy_binary() is None:
        parser.error("--profile needs py-spy")
    for binary in ("skopeo", "curl"):
        if shutil.which(binary) is None:
            parser.error(f"{binary} is not installed")
    # SIGTERM unwinds like Ctrl-C, so every registry, daemon and temp dir is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started ignoring it
    try:
        with scratch_dir("rcmp", args.work_dir) as work:
            figures = run(args, work)
    except KeyboardInterrupt:
        print("\ninterrupted: registries, dockerd and temp dirs are stopped and removed")
        sys.exit(130)
    name = "registry_compare" + ("_quick" if args.quick else "")
    subtitle = (f"{figures['image']['bytes'] / 1e6:.0f} MB image, {args.layers} gzip layers, "
                f"median of {args.reps}; bold: Shoal ÷ reference")
    png = chart(figures["phases"], RESULTS / f"{name}.png", subtitle)
    print(f"results: {save(name, figures)}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
