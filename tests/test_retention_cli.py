"""`shoal retention` against a running `shoal serve` (through its data folder) and a
registry at rest, and retention on `shoal serve`'s own schedule, all over HTTP pushes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support import SHOAL, free_port, running, wait_until

WIDE = {**os.environ, "COLUMNS": "200"}

OCI = "application/vnd.oci.image.manifest.v1+json"
# Every untagged manifest pushed before the command runs is older than this.
POLICY = """
[[policy]]
repositories = ["team/*"]
keep_last = 1
keep_tags = ['v\\d+']
untagged_older_than = "0s"
"""


def _push_blob(base: str, repository: str, data: bytes) -> dict[str, Any]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    request = urllib.request.Request(f"{base}/v2/{repository}/blobs/uploads/?digest={digest}",
                                     data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    return {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest,
            "size": len(data)}


def push_image(base: str, repository: str, reference: str, label: str,
               subject: str = "") -> str:
    """An OCI image of one config blob, pushed under `reference`; its digest."""
    config = _push_blob(base, repository, json.dumps({"label": label}).encode())
    body: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI, "config": config,
                            "layers": []}
    if subject:
        body["subject"] = {"mediaType": OCI, "digest": subject, "size": 1}
    content = json.dumps(body).encode()
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    request = urllib.request.Request(f"{base}/v2/{repository}/manifests/{reference or digest}",
                                     data=content, method="PUT",
                                     headers={"Content-Type": OCI})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
    return digest


def tags(base: str, repository: str) -> list[str]:
    with urllib.request.urlopen(f"{base}/v2/{repository}/tags/list", timeout=30) as response:
        found: list[str] = json.loads(response.read())["tags"]
        return found


def exists(base: str, repository: str, reference: str) -> bool:
    request = urllib.request.Request(f"{base}/v2/{repository}/manifests/{reference}",
                                     method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=30):
            return True
    except urllib.error.HTTPError as error:
        assert error.code == 404
        return False


def retention(*args: str) -> dict[str, Any]:
    result = subprocess.run([*SHOAL, "retention", "--json", *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def populate(base: str) -> dict[str, str]:
    d = {"v1": push_image(base, "team/app", "v1", "v1"),
         "old": push_image(base, "team/app", "old", "old"),
         "new": push_image(base, "team/app", "new", "new")}
    d["sig"] = push_image(base, "team/app", "", "sig", subject=d["new"])
    d["stray"] = push_image(base, "team/app", "", "stray")
    d["other"] = push_image(base, "other/app", "", "other")
    return d


def test_retention_through_the_data_folder_of_a_running_registry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    policy = tmp_path / "retention.toml"
    policy.write_text(POLICY)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([*SHOAL, "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}"],
                 tmp_path / "serve.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"{base}/v2/", timeout=2), "registry", proc)
        d = populate(base)
        dry = retention("--policy", str(policy), "--data", str(data), "--dry-run")
        went = {(a["kind"], a["target"]) for a in dry["actions"]}
        assert went == {("tag", "old"), ("manifest", d["old"]), ("manifest", d["stray"])}
        assert tags(base, "team/app") == ["new", "old", "v1"]
        real = retention("--policy", str(policy), "--data", str(data))
        assert real["actions"] == dry["actions"] and not real["dry_run"]
        assert tags(base, "team/app") == ["new", "v1"]
        for kept in ("v1", "new", "sig", "other"):
            assert exists(base, "team/app" if kept != "other" else "other/app", d[kept])
        assert not exists(base, "team/app", d["old"])
        assert not exists(base, "team/app", d["stray"])
        push_image(base, "team/app", "newer", "newer")
        table = subprocess.run([*SHOAL, "retention", "--policy", str(policy), "--data",
                                str(data), "--dry-run"], capture_output=True, text=True,
                               timeout=120, check=True, env=WIDE).stdout
        assert "dry run" in table and "new" in table and "not among the last 1" in table
        # `new` loses its tag to `newer`, and its signature goes with it.
        assert "1 tags and 2 manifests would go, in 1 repository" in table

    # At rest, the data folder is opened directly.
    at_rest = retention("--policy", str(policy), "--data", str(data))
    assert {a["target"] for a in at_rest["actions"]} == {"new", d["new"], d["sig"]}
    assert retention("--policy", str(policy), "--data", str(data))["actions"] == []


def test_a_bad_policy_file_is_refused_with_the_reason(tmp_path: Path) -> None:
    policy = tmp_path / "retention.toml"
    policy.write_text('[[policy]]\nrepositories = ["a"]\nkeep_last = "ten"\n')
    result = subprocess.run([*SHOAL, "retention", "--policy", str(policy), "--data",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "keep_last" in result.stderr


def test_shoal_serve_applies_retention_on_its_schedule(tmp_path: Path) -> None:
    policy = tmp_path / "retention.toml"
    policy.write_text(POLICY)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen",
                  f"127.0.0.1:{port}", "--retention", str(policy),
                  "--retention-interval", "0.2s"], tmp_path / "serve.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"{base}/v2/", timeout=2), "registry", proc)
        d = populate(base)
        wait_until(lambda: tags(base, "team/app") == ["new", "v1"], "retention ran", proc)
        wait_until(lambda: not exists(base, "team/app", d["stray"]), "stray deleted", proc)
        assert exists(base, "team/app", d["sig"])
