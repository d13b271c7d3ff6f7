"""The auth configuration file (TOML), read once at start."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from gateway.auth.policy import Policy, Rule

ACTIONS = frozenset({"pull", "push", "delete", "admin"})


@dataclass(frozen=True, slots=True)
class AuthConfig:
    htpasswd: Path
    policy: Policy
    key: Path                       # ES256 private key (PEM), made on first start if absent
    service: str = "shoal"
    realm: str = ""                 # token endpoint URL; "" means this gateway's own /token
    token_seconds: int = 300


def load(path: Path, data_dir: Path) -> AuthConfig:
    """Read `path`; relative file names in it are relative to its folder. ValueError with
    the reason when it is not a valid configuration."""
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    base = path.parent
    rules = []
    for i, entry in enumerate(raw.get("rule", [])):
        actions = frozenset(entry.get("actions", []))
        if not actions <= ACTIONS:
            raise ValueError(f"{path}: rule {i + 1}: unknown actions {sorted(actions - ACTIONS)}")
        users = entry.get("users", [])
        repositories = entry.get("repositories", [])
        if not users or not repositories:
            raise ValueError(f"{path}: rule {i + 1} needs users and repositories")
        rules.append(Rule(frozenset(users), tuple(repositories), actions))
    groups = raw.get("groups", {})
    if not isinstance(groups, dict) or not all(
            isinstance(m, list) and all(isinstance(u, str) for u in m) for m in groups.values()):
        raise ValueError(f"{path}: [groups] maps a group name to a list of users")
    if "htpasswd" not in raw:
        raise ValueError(f"{path}: `htpasswd` (the users file) is required")
    return AuthConfig(
        htpasswd=base / raw["htpasswd"],
        policy=Policy(tuple(rules), {g: frozenset(m) for g, m in groups.items()}),
        key=base / raw["key"] if "key" in raw else data_dir / "auth-key.pem",
        service=str(raw.get("service", "shoal")),
        realm=str(raw.get("realm", "")),
        token_seconds=int(raw.get("token_seconds", 300)),
    )
