"""A registry whose disk fills up refuses the push that does not fit, cleanly, and loses
nothing it had acknowledged. Real `shoal serve` process, data on a small tmpfs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import SHOAL, free_port, small_tmpfs, stop, wait_until


@pytest.fixture
def small_disk() -> Iterator[Path]:
    with small_tmpfs("24m") as mountpoint:
        yield mountpoint


def request(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def push(base: str, repo: str, blob: bytes) -> tuple[int, bytes, str]:
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, body = request("POST", f"{base}/v2/{repo}/blobs/uploads/?digest={digest}", blob)
    return status, body, digest


def start(data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        proc = subprocess.Popen([*SHOAL, "serve", "--data", str(data), "--listen",
                                 f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    wait_until(lambda: request("GET", f"http://127.0.0.1:{port}/v2/")[0] == 200,
               "the registry answers", proc)
    return proc


def test_a_push_that_does_not_fit_is_refused_and_nothing_is_lost(small_disk: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = small_disk.parent / f"{small_disk.name}.log"
    proc = start(small_disk / "data", port, log)
    try:
        kept = os.urandom(200_000)
        status, _, kept_digest = push(base, "lib/app", kept)
        assert status == 201

        too_big = os.urandom(40 << 20)
        status, body, big_digest = push(base, "lib/app", too_big)
        assert 500 <= status < 600, (status, body)
        errors = json.loads(body)["errors"]
        assert errors and errors[0]["code"], body
        # Nothing of the refused blob is visible, and the registry is still up.
        assert request("HEAD", f"{base}/v2/lib/app/blobs/{big_digest}")[0] == 404
        assert proc.poll() is None
        # What was acknowledged before is intact, now and after a restart.
        assert request("GET", f"{base}/v2/lib/app/blobs/{kept_digest}") == (200, kept)
        stop(proc)
        proc = start(small_disk / "data", port, log)
        assert request("GET", f"{base}/v2/lib/app/blobs/{kept_digest}") == (200, kept)
        assert request("HEAD", f"{base}/v2/lib/app/blobs/{big_digest}")[0] == 404
    finally:
        stop(proc)
        log.unlink(missing_ok=True)
