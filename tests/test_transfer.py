"""`shoal push` and `shoal pull` as a user runs them, against a real `shoal serve` process
and against the reference registry: byte for byte round trips, dedup on a second push,
cross-repository mounts, docker archives, and clear failures."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clients.images import (
    ImageMaker,
    assert_layout_holds,
    make_tar,
    read_layout_ref,
    write_layout,
)
from support import SHOAL, free_port, running, wait_until

REFERENCE = Path("/usr/bin/docker-registry")


def shoal(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*SHOAL, *args], capture_output=True, text=True, timeout=180)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def summary(*args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(shoal(*args, "--json", "--quiet").stdout)
    return report


@contextlib.contextmanager
def registry(tmp_path: Path) -> Iterator[str]:
    """A `shoal serve` process; its host:port."""
    import urllib.request

    address = f"127.0.0.1:{free_port()}"
    with running([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen", address],
                 tmp_path / "serve.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"http://{address}/v2/", timeout=2),
                   "registry", proc)
        yield address


def test_push_then_pull_byte_for_byte(tmp_path: Path) -> None:
    maker = ImageMaker(701)
    image, index = maker.image(), maker.index()
    layout = tmp_path / "layout"
    write_layout(layout, {"v1": image, "multi": index})
    with registry(tmp_path) as address:
        first = shoal("push", f"{layout}:v1", f"{address}/app:v1")
        assert f"pushed {address}/app:v1 ({image.digest})" in first.stdout
        assert "blobs transferred: 4" in first.stdout
        assert "pushed" in first.stderr  # the progress bars' final state

        again = summary("push", f"{layout}:v1", f"{address}/app:v1")
        assert again["blobs_sent"] == 0 and again["bytes_sent"] == 0
        assert again["blobs_present"] == len(image.blobs())
        assert again["bytes_saved"] == sum(len(b.data) for b in image.blobs())
        assert again["digest"] == image.digest

        out = tmp_path / "out"
        pulled = summary("pull", f"{address}/app:v1", str(out))
        assert pulled["blobs_sent"] == len(image.blobs())
        assert_layout_holds(out, "v1", image)
        # A second pull into the same layout downloads nothing.
        assert summary("pull", f"{address}/app:v1", str(out))["blobs_sent"] == 0

        # A multi-platform index, through an OCI archive, and back into another repository:
        # the archive remembers where it came from, so every blob is mounted, not sent.
        assert summary("push", f"oci:{layout}:multi", f"{address}/app:multi")["manifests"] == 3
        archive = tmp_path / "multi.tar"
        shoal("pull", f"{address}/app:multi", str(archive), "--quiet")
        copy = summary("push", str(archive), f"{address}/copy:multi")
        blobs = {b.digest for i in index.images for b in i.blobs()}
        assert copy["blobs_mounted"] == len(blobs) and copy["blobs_sent"] == 0
        by_digest = summary("pull", f"{address}/copy@{index.digest}", str(out), "--name", "m")
        assert by_digest["digest"] == index.digest
        assert_layout_holds(out, "m", index)
        assert read_layout_ref(out, "v1")["digest"] == image.digest  # still there


def test_a_pull_of_an_unknown_tag_fails_clearly(tmp_path: Path) -> None:
    with registry(tmp_path) as address:
        result = shoal("pull", f"{address}/nothing:here", str(tmp_path / "out"), check=False)
    assert result.returncode == 1
    assert f"{address}/nothing:here" in result.stderr
    assert "404" in result.stderr and "MANIFEST_UNKNOWN" in result.stderr
    assert "Traceback" not in result.stderr


def test_clear_errors_for_bad_input(tmp_path: Path) -> None:
    port = free_port()
    nobody = shoal("pull", f"127.0.0.1:{port}/app:v1", str(tmp_path / "o"), check=False)
    assert nobody.returncode == 1 and f"reaching 127.0.0.1:{port}" in nobody.stderr
    missing = shoal("push", str(tmp_path / "nope"), f"127.0.0.1:{port}/app", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    bad = shoal("push", str(tmp_path), "not a reference", check=False)
    assert bad.returncode == 1 and "HOST[:PORT]/REPOSITORY" in bad.stderr
    layout = tmp_path / "layout"
    maker = ImageMaker(702)
    write_layout(layout, {"a": maker.image(layer_count=1), "b": maker.image(layer_count=1)})
    ambiguous = shoal("push", str(layout), f"127.0.0.1:{port}/app", check=False)
    assert ambiguous.returncode == 1 and "holds 2 images" in ambiguous.stderr


def _docker_archive(path: Path, maker: ImageMaker) -> tuple[bytes, list[bytes]]:
    """What `docker save` writes: manifest.json, the config, uncompressed layer tars."""
    layers = [make_tar(maker.layer_files(i, 64 << 10, 32 << 10)) for i in range(2)]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers",
        "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in layers]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    files = {config_name: config,
             "manifest.json": json.dumps([{
                 "Config": config_name, "RepoTags": ["app:v1"],
                 "Layers": [f"l{i}/layer.tar" for i in range(len(layers))]}]).encode()}
    files.update({f"l{i}/layer.tar": t for i, t in enumerate(layers)})
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return config, layers


def test_a_docker_archive_round_trips(tmp_path: Path) -> None:
    archive = tmp_path / "saved.tar"
    config, layers = _docker_archive(archive, ImageMaker(703))
    with registry(tmp_path) as address:
        pushed = summary("push", f"{archive}:v1", f"{address}/docker:v1")
        assert pushed["blobs_sent"] == 3
        out = tmp_path / "out"
        shoal("pull", f"{address}/docker:v1", str(out), "--quiet")
    manifest_digest = read_layout_ref(out, "v1")["digest"]
    assert manifest_digest == pushed["digest"]
    blobs = out / "blobs" / "sha256"
    manifest = json.loads((blobs / str(manifest_digest)[7:]).read_bytes())
    assert (blobs / manifest["config"]["digest"][7:]).read_bytes() == config
    assert [(blobs / d["digest"][7:]).read_bytes() for d in manifest["layers"]] == layers


@pytest.mark.skipif(not REFERENCE.exists(), reason="needs the docker-registry package")
def test_push_and_pull_with_the_reference_registry(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A generic client: the CNCF registry takes the push and gives the image back."""
    from clients.registries import start_registry

    monkeypatch.setenv("SHOAL_TEST_REGISTRY", "reference")
    maker = ImageMaker(704)
    index = maker.index()
    layout = tmp_path / "layout"
    write_layout(layout, {"multi": index})
    with start_registry() as reference:
        assert summary("push", str(layout), f"{reference.address}/lib/app:m")["manifests"] == 3
        assert summary("push", str(layout), f"{reference.address}/lib/app:m")["blobs_sent"] == 0
        out = tmp_path / "out"
        shoal("pull", f"{reference.address}/lib/app:m", str(out), "--quiet")
    assert_layout_holds(out, "m", index)


def test_credentials_from_the_environment_against_token_auth(tmp_path: Path) -> None:
    """Docker token auth: the writer pushes, the reader pulls but may not push, and a
    stranger is told to sign in. The password comes from $SHOAL_PASSWORD."""
    import os
    import urllib.error
    import urllib.request

    import bcrypt

    users = {"writer": "w-pass-1", "reader": "r-pass-2"}
    (tmp_path / "users").write_text("".join(
        f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
        for u, p in users.items()))
    (tmp_path / "auth.toml").write_text(
        'htpasswd = "users"\n\n[[rule]]\nusers = ["writer"]\nrepositories = ["team/*"]\n'
        'actions = ["pull", "push"]\n\n[[rule]]\nusers = ["reader"]\n'
        'repositories = ["team/*"]\nactions = ["pull"]\n')
    layout = tmp_path / "layout"
    image = ImageMaker(705).image(layer_count=1)
    write_layout(layout, {"v1": image})
    address = f"127.0.0.1:{free_port()}"

    def status() -> bool:
        try:
            urllib.request.urlopen(f"http://{address}/v2/", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code == 401
        return False

    def as_user(user: str | None, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SHOAL_")}
        if user is not None:
            env.update(SHOAL_USER=user, SHOAL_PASSWORD=users[user])
        return subprocess.run([*SHOAL, *args, "--quiet"], capture_output=True, text=True,
                              timeout=120, env=env)

    with running([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen", address,
                  "--auth", str(tmp_path / "auth.toml")], tmp_path / "serve.log") as proc:
        wait_until(status, "registry asking for credentials", proc)
        pushed = as_user("writer", "push", str(layout), f"{address}/team/app:v1")
        assert pushed.returncode == 0, pushed.stderr
        refused = as_user("reader", "push", str(layout), f"{address}/team/app:v2")
        assert refused.returncode == 1, refused.stderr
        assert "403 Forbidden — DENIED: push is not allowed in team/app" in refused.stderr
        stranger = as_user(None, "pull", f"{address}/team/app:v1", str(tmp_path / "x"))
        assert stranger.returncode == 1 and "401" in stranger.stderr, stranger.stderr
        pulled = as_user("reader", "pull", f"{address}/team/app:v1", str(tmp_path / "out"))
        assert pulled.returncode == 0, pulled.stderr
    assert_layout_holds(tmp_path / "out", "v1", image)
