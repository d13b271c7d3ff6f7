"""Quotas through real processes: `shoal gateway --quota` in front of a `shoal node`,
driven over HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from support import SHOAL, free_port, running, wait_until


def post_blob(base: str, repository: str, data: bytes) -> tuple[int, bytes]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    request = urllib.request.Request(f"{base}/v2/{repository}/blobs/uploads/?digest={digest}",
                                     data=data, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_gateway_process_refuses_a_push_over_quota(tmp_path: Path) -> None:
    quota = tmp_path / "quota.toml"
    quota.write_text('[[quota]]\nrepositories = ["team/*"]\nmax = "1 MiB"\n')
    port_file = tmp_path / "port"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running([*SHOAL, "node", "--data", str(tmp_path / "data"), "--listen",
                  "127.0.0.1:0", "--port-file", str(port_file)], tmp_path / "node.log") as node:
        wait_until(lambda: port_file.read_text().endswith("\n"), "node", node)
        node_port = int(port_file.read_text())
        with running([*SHOAL, "gateway", "--node", f"127.0.0.1:{node_port}", "--listen",
                      f"127.0.0.1:{port}", "--quota", str(quota)],
                     tmp_path / "gateway.log") as gateway:
            wait_until(lambda: urllib.request.urlopen(f"{base}/v2/", timeout=2), "gateway",
                       gateway)
            assert post_blob(base, "team/app", os.urandom(700_000))[0] == 201
            status, body = post_blob(base, "team/app", os.urandom(500_000))
            assert status == 403
            error = json.loads(body)["errors"][0]
            assert error["code"] == "DENIED"
            assert error["message"] == ("repository team/app is over its quota of 1.0 MiB "
                                        "(1.1 MiB used with this push)")
            assert post_blob(base, "team/app", os.urandom(300_000))[0] == 201
            assert post_blob(base, "other/app", os.urandom(1_500_000))[0] == 201


def test_a_bad_quota_file_stops_the_gateway_with_the_reason(tmp_path: Path) -> None:
    quota = tmp_path / "quota.toml"
    quota.write_text('[[quota]]\nrepositories = ["team/*"]\nmax = "lots"\n')
    result = subprocess.run([*SHOAL, "serve", "--data", str(tmp_path / "data"), "--listen",
                             f"127.0.0.1:{free_port()}", "--quota", str(quota)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "lots" in result.stderr
