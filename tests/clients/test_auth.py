"""Real clients sign in to a Shoal started with --auth: docker login and skopeo --creds
push and pull where the policy allows and are refused where it does not.

These start their own `shoal serve --auth` (the session's registry runs without auth), so
they run whatever SHOAL_TEST_REGISTRY selects.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from .engines import Docker, Podman, Skopeo
from .images import ImageMaker, write_layout
from .procs import Process, free_port, http_status, scratch_dir

pytestmark = pytest.mark.clients

USERS = {"writer": "w-pass-1", "reader": "r-pass-2"}
POLICY = """
htpasswd = "users"

[[rule]]
users = ["writer"]
repositories = ["team/*"]
actions = ["pull", "push"]

[[rule]]
users = ["reader"]
repositories = ["team/*"]
actions = ["pull"]
"""


@pytest.fixture
def secured_registry() -> Iterator[str]:
    with scratch_dir("auth") as root:
        (root / "users").write_text("".join(
            f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=6)).decode()}\n"
            for u, p in USERS.items()))
        (root / "auth.toml").write_text(POLICY)
        address = f"127.0.0.1:{free_port()}"
        process = Process("shoal serve --auth", [
            sys.executable, "-m", "shoal", "serve", "--data", str(root / "data"),
            "--listen", address, "--auth", str(root / "auth.toml")], root / "shoal.log")
        try:
            process.wait_until(lambda: http_status(f"http://{address}/v2/") == 401, 30,
                               "GET /v2/ answers 401")
            yield address
        finally:
            process.stop()


def test_skopeo_with_credentials(skopeo: Skopeo, secured_registry: str,
                                 image_maker: ImageMaker, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    write_layout(layout, {"src": image_maker.image(layer_count=2)})
    dest = f"docker://{secured_registry}/team/app:v1"

    skopeo.copy(f"oci:{layout}:src", dest, "--dest-creds", f"writer:{USERS['writer']}")
    skopeo.copy(dest, f"oci:{tmp_path / 'out'}:v1", "--src-creds", f"reader:{USERS['reader']}")

    refused = [
        ("reader may not push", ["--dest-creds", f"reader:{USERS['reader']}"],
         f"oci:{layout}:src", f"docker://{secured_registry}/team/other:v1"),
        ("nobody may push anonymously", [], f"oci:{layout}:src",
         f"docker://{secured_registry}/team/other:v1"),
        ("a wrong password", ["--src-creds", "reader:wrong"], dest,
         f"oci:{tmp_path / 'nope'}:v1"),
        ("outside the policy", ["--dest-creds", f"writer:{USERS['writer']}"],
         f"oci:{layout}:src", f"docker://{secured_registry}/elsewhere/app:v1"),
    ]
    for why, creds, source, target in refused:
        result = skopeo("copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                        *creds, source, target, check=False)
        assert result.returncode != 0, why
        assert any(word in result.stderr.lower()
                   for word in ("denied", "unauthorized", "authentication", "forbidden")), \
            result.stderr


def test_docker_login_push_and_pull(dockerd: Docker, secured_registry: str,
                                    tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("hello from an authenticated push\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    tag = f"{secured_registry}/team/hello:v1"
    dockerd("build", "--quiet", "--tag", tag, str(context))

    # (An anonymous push is refused too, but docker retries a 401 with back-off for most of
    # a minute before it gives up; the skopeo test covers it.)
    wrong = _login(dockerd, secured_registry, "writer", "not-the-password")
    assert wrong.returncode != 0

    assert _login(dockerd, secured_registry, "reader", USERS["reader"]).returncode == 0
    refused = dockerd("push", tag, check=False)
    assert refused.returncode != 0
    assert "denied" in (refused.stderr + refused.stdout).lower()

    assert _login(dockerd, secured_registry, "writer", USERS["writer"]).returncode == 0
    dockerd("push", tag)
    dockerd("rmi", tag)
    dockerd("pull", tag)
    dockerd("logout", secured_registry)


def _login(docker: Docker, registry: str, user: str, password: str
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([docker.cli, "login", registry, "--username", user,
                           "--password-stdin"], input=password, text=True,
                          capture_output=True, env={**os.environ, **docker.env}, timeout=60)


def test_podman_login_push_and_pull(podman: Podman, secured_registry: str,
                                    tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "hello.txt").write_text("hello from podman\n")
    (context / "Containerfile").write_text("FROM scratch\nCOPY hello.txt /hello.txt\n")
    ref = f"{secured_registry}/team/podman:v1"
    podman("build", "--quiet", "--network", "none", "--tag", ref, str(context))

    podman("login", "--tls-verify=false", "--username", "reader", "--password",
           USERS["reader"], secured_registry)
    refused = podman("push", "--tls-verify=false", ref, check=False)
    assert refused.returncode != 0 and "denied" in refused.stderr.lower(), refused.stderr

    wrong = podman("login", "--tls-verify=false", "--username", "writer", "--password",
                   "wrong", secured_registry, check=False)
    assert wrong.returncode != 0

    podman("login", "--tls-verify=false", "--username", "writer", "--password",
           USERS["writer"], secured_registry)
    podman("push", "--tls-verify=false", ref)
    podman("rmi", ref)
    podman("pull", "--quiet", "--tls-verify=false", ref)
    podman("logout", secured_registry)


def test_oras_with_username_and_password(secured_registry: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    oras_client = pytest.importorskip("oras.client")
    source = tmp_path / "source"
    source.mkdir()
    (source / "notes.txt").write_bytes(b"an artifact behind a password\n" * 100)
    monkeypatch.chdir(source)
    target = f"{secured_registry}/team/artifact:v1"

    writer = oras_client.OrasClient(hostname=secured_registry, insecure=True)
    writer.login(username="writer", password=USERS["writer"], tls_verify=False)
    assert writer.push(target=target, files=["notes.txt"], quiet=True).status_code == 201

    reader = oras_client.OrasClient(hostname=secured_registry, insecure=True)
    reader.login(username="reader", password=USERS["reader"], tls_verify=False)
    pulled = reader.pull(target=target, outdir=str(tmp_path / "out"))
    assert [Path(p).read_bytes() for p in pulled] == [b"an artifact behind a password\n" * 100]
    # (A refused oras-py push is retried with back-off for minutes before it fails; the
    # other clients cover refusals.)
