"""compose.yaml stays valid (checked by Debian's docker-compose, which needs no engine),
runs the cluster its cluster file describes, and two edges in front of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from shoal.cli import _parser

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


def edge_commands() -> dict[str, list[str]]:
    """Each edge service's command, read from compose.yaml's flow lists (valid JSON)."""
    text = (ROOT / "compose.yaml").read_text()
    found = re.findall(r"^  (\w+):\n    <<: \*edge\n    command: (\[.*?\])", text,
                       re.MULTILINE | re.DOTALL)
    return {name: json.loads(command) for name, command in found}


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose missing")
def test_compose_runs_two_edges_in_front_of_the_cluster() -> None:
    services = set(compose("config", "--services").split())
    commands = edge_commands()
    assert set(commands) == {"edge1", "edge2"} and services >= set(commands)
    for name, command in commands.items():
        args = _parser().parse_args(command)
        assert args.command == "edge"
        assert args.cluster == Path("/etc/shoal/cluster.toml") and not args.origin
        # The host's docker reaches its edge on localhost; peers on the compose network.
        assert args.listen == ("127.0.0.1", 5000)
        assert args.peer_listen.startswith("0.0.0.0:")
        assert args.advertise == f"{name}:{args.peer_listen.rpartition(':')[2]}"
