"""py-spy attached to the Shoal process while a benchmark phase runs, and a summary of it."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")
OWN_PACKAGES = ("node/", "gateway/")
# Entry points and request dispatch sit under nearly every sample and say nothing.
WRAPPERS = ("gateway/app.py", "gateway/routing.py", "gateway/middleware.py")


def py_spy_binary() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def py_spy(pid: int, out: Path, rate: int = 100) -> Iterator[None]:
    """Record `pid` (only threads holding the GIL) in py-spy's raw format for the block."""
    binary = py_spy_binary()
    if binary is None:
        raise RuntimeError("py-spy is not installed")
    log = out.with_suffix(".log").open("wb")
    proc = subprocess.Popen([binary, "record", "--gil", "-r", str(rate), "-p", str(pid),
                             "-f", "raw", "-o", str(out)], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        yield
    finally:
        # py-spy writes its output when interrupted, as on Ctrl-C.
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "python3.", "/work/main/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker == "python3.":
                path = "stdlib/" + path.split("/", 1)[-1]
    return f"{match['func']} ({path})"


def summarise(raw: Path, top: int = 12) -> dict[str, Any]:
    """Leaf frames (where the GIL-holding time is spent) and inclusive time of Shoal's code."""
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    if not raw.exists():
        return {"samples": 0, "leaf": [], "shoal_inclusive": []}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit() or not stack:
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";")]
        total += count
        leaves[frames[-1]] += count
        for frame in set(frames):
            if (any(f"({pkg}" in frame for pkg in OWN_PACKAGES)
                    and not any(f"({w}" in frame for w in WRAPPERS)):
                inclusive[frame] += count

    def shares(counter: Counter[str]) -> list[dict[str, Any]]:
        return [{"frame": frame, "share": count / total}
                for frame, count in counter.most_common(top)]

    return {"samples": total, "leaf": shares(leaves), "shoal_inclusive": shares(inclusive)}
