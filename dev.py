#!/usr/bin/env python3
"""Set up and run Shoal from a fresh clone with nothing but python3.

    python3 dev.py serve [shoal serve options]   # registry on localhost:5000, data in ./shoal-data
    python3 dev.py test [pytest options]          # lint, type checks and the whole test suite

Both create ./.venv and install what they need first (`test` also installs the Debian
packages the real-client tests drive, when run as root); later runs reuse it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"


def _run(*cmd: str | Path, **kwargs: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, **kwargs)  # type: ignore[call-overload]


def ensure_venv(extras: str) -> None:
    """Create .venv and install the project with `extras`, skipping the install when
    pyproject.toml has not changed since the last one."""
    if not (BIN / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(*pip, "install", "--upgrade", "pip")
    _run(*pip, "install", "-e", f".[{extras}]" if extras else ".")
    stamp.write_text(want)


def serve(args: list[str]) -> int:
    ensure_venv("")
    os.execv(BIN / "shoal", [str(BIN / "shoal"), "serve", *args])


def test(args: list[str]) -> int:
    ensure_venv("dev")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if os.geteuid() == 0 and Path("/usr/bin/apt-get").exists():
        _run("bash", ROOT / ".ci" / "install-system-packages")
        # They were just installed: a client that is missing now is a failure, not a skip.
        env.setdefault("SHOAL_TEST_REQUIRE_CLIENTS", "1")
    else:
        print("not root: real-client tests run only for clients already installed")
    _run(BIN / "ruff", "check", ".")
    _run(BIN / "mypy")
    return subprocess.run([str(BIN / "pytest"), *args], cwd=ROOT, env=env).returncode


def main() -> int:
    commands = {"serve": serve, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    raise SystemExit(main())
