"""Settings come from the config file, then SHOAL_* variables, then flags, each beating the
one before; checked through real `shoal` processes."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from support import SHOAL, free_port, free_port_block, running, wait_until


def shoal(args: list[str], cwd: Path, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    return subprocess.run([*SHOAL, *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env={**clean, **(env or {})})


def show(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = shoal(["config", "show", "--json", *args], cwd, env)
    assert result.returncode == 0, result.stderr
    settings: dict[str, Any] = json.loads(result.stdout)["settings"]
    return {name: (s["value"], s["source"]) for name, s in settings.items()}


FILE = """\
log-level = "WARNING"

[serve]
listen = "0.0.0.0:6000"
data = "/from/file"
gc-interval = "30m"
upload_idle_hours = 12

[gateway]
node = "10.0.0.1:7400"
"""


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    (tmp_path / "shoal.toml").write_text(FILE)
    found = show(["serve"], tmp_path)
    assert found["listen"] == ("0.0.0.0:6000", "file")
    assert found["upload-idle-hours"] == (12.0, "file")
    assert found["log-level"] == ("WARNING", "file")
    assert found["gc-grace"] == (3600.0, "default")

    env = {"SHOAL_DATA": "/from/env", "SHOAL_GC_INTERVAL": "2h", "SHOAL_LOG_LEVEL": "ERROR"}
    found = show(["serve"], tmp_path, env)
    assert found["data"] == ("/from/env", "env SHOAL_DATA")
    assert found["gc-interval"] == (7200.0, "env SHOAL_GC_INTERVAL")
    assert found["log-level"] == ("ERROR", "env SHOAL_LOG_LEVEL")
    assert found["listen"] == ("0.0.0.0:6000", "file")

    # A command's own variable beats the shared one; a flag beats them all.
    env["SHOAL_SERVE_DATA"] = "/from/serve-env"
    found = show(["serve", "--data", "/from/flag", "--listen", "127.0.0.1:7000"],
                 tmp_path, env)
    assert found["data"] == ("/from/flag", "flag")
    assert found["listen"] == ("127.0.0.1:7000", "flag")
    assert show(["serve"], tmp_path, env)["data"] == ("/from/serve-env",
                                                      "env SHOAL_SERVE_DATA")


def test_a_flag_beats_the_file_inside_a_choice_of_one(tmp_path: Path) -> None:
    (tmp_path / "shoal.toml").write_text(FILE)
    assert show(["gateway"], tmp_path)["node"] == ("10.0.0.1:7400", "file")
    found = show(["gateway", "--cluster", "c.toml"], tmp_path)
    assert found["cluster"] == ("c.toml", "flag") and found["node"] == (None, "default")


def test_config_file_from_flag_and_environment(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text('[serve]\nlisten = "127.0.0.1:6001"\n')
    (tmp_path / "shoal.toml").write_text(FILE)
    assert show(["serve"], tmp_path, {"SHOAL_CONFIG": str(elsewhere)})["listen"][0] == \
        "127.0.0.1:6001"
    result = shoal(["--config", str(elsewhere), "config", "show", "--json", "serve"],
                   tmp_path)
    assert json.loads(result.stdout)["file"] == str(elsewhere)


def test_unknown_keys_and_bad_values_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "shoal.toml").write_text('[serve]\nlisten = "0.0.0.0:5000"\nlistne = 1\n')
    result = shoal(["serve"], tmp_path)
    assert result.returncode == 2
    assert "[serve] listne is not an option of `shoal serve`" in result.stderr
    assert "listen" in result.stderr  # the valid keys are listed

    (tmp_path / "shoal.toml").write_text('[srve]\nlisten = "0.0.0.0:5000"\n')
    assert "[srve] is not a command" in shoal(["serve"], tmp_path).stderr
    (tmp_path / "shoal.toml").write_text('listen = "0.0.0.0:5000"\n')
    assert "not a global option" in shoal(["serve"], tmp_path).stderr
    (tmp_path / "shoal.toml").write_text("[serve\n")
    assert "not valid TOML" in shoal(["serve"], tmp_path).stderr

    (tmp_path / "shoal.toml").unlink()
    bad = shoal(["serve"], tmp_path, {"SHOAL_LISTEN": "nowhere"})
    assert bad.returncode == 2
    assert "$SHOAL_LISTEN: expected HOST:PORT, got 'nowhere'" in bad.stderr
    missing = shoal(["--config", "absent.toml", "serve"], tmp_path)
    assert missing.returncode == 2 and "cannot read absent.toml" in missing.stderr


def test_a_registry_runs_from_its_config_file(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "shoal.toml").write_text(
        f'[serve]\nlisten = "127.0.0.1:{port}"\ndata = "{tmp_path / "data"}"\n'
        'gc-interval = "0"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    argv = ["env", "-i", *(f"{k}={v}" for k, v in clean.items()),
            f"SHOAL_CONFIG={tmp_path / 'shoal.toml'}", *SHOAL, "serve"]
    with running(argv, tmp_path / "serve.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2),
                   "registry on the port from the file", proc)
    assert (tmp_path / "data" / "index").is_dir()


def test_help_reads_well() -> None:
    top = subprocess.run([*SHOAL, "--help"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    for command in ("serve", "node", "gateway", "push", "pull", "status", "gc", "cluster",
                    "config"):
        assert f"    {command} " in top, command
        text = subprocess.run([*SHOAL, command, "--help"], capture_output=True, text=True,
                              timeout=60, check=True).stdout
        assert "--config FILE" in text
        if command not in ("config", "status"):
            assert "(default:" in text or command in ("push", "pull"), command
        assert "example:" in text, command
    serve = subprocess.run([*SHOAL, "serve", "--help"], capture_output=True, text=True,
                           timeout=60, check=True).stdout
    for group in ("storage:", "network:", "access:", "garbage collection:"):
        assert group in serve


def test_shoal_cluster_children_do_not_inherit_its_settings(tmp_path: Path) -> None:
    """`shoal cluster` takes --listen from the environment for its gateway, but its nodes
    must not: they would all try to bind it (and the file's one metrics port)."""
    port, base = free_port(), free_port_block(3)  # members listen on base+1 and base+2
    (tmp_path / "shoal.toml").write_text(f'[node]\nmetrics-listen = "127.0.0.1:{port}"\n')
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
    argv = ["env", "-i", *(f"{k}={v}" for k, v in clean.items()),
            f"SHOAL_LISTEN=127.0.0.1:{port}", *SHOAL, "cluster", "--nodes", "2",
            "--replicas", "2", "--data", str(tmp_path / "c"), "--base-port", str(base)]
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2),
                   "the cluster's gateway on the port from SHOAL_LISTEN", proc, timeout=60)
        wait_until(lambda: shoal(["status", "--cluster", str(tmp_path / "c" / "cluster.toml")],
                                 tmp_path).returncode == 0, "both members up", proc,
                   timeout=60)
    finally:
        proc.terminate()
        assert proc.wait(60) == 0
