"""compose.yaml stays valid (checked by Debian's docker-compose, which needs no engine) and
runs the cluster its cluster file describes."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def compose(*args: str) -> str:
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "compose.yaml"), *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose missing")
def test_compose_file_is_valid_and_matches_its_cluster_file() -> None:
    compose("config", "-q")
    services = set(compose("config", "--services").split())
    cluster = tomllib.loads((ROOT / "deploy" / "cluster.toml").read_text())
    members = {m["id"]: m["address"] for m in cluster["members"]}
    assert len(members) == 3 and cluster["replicas"] == 2
    assert services >= {*members, "gateway"}
    text = (ROOT / "compose.yaml").read_text()
    for member_id, address in members.items():
        assert address == f"{member_id}:7400"  # the service name resolves to the container
        assert f'"--id", "{member_id}"' in text
