"""Stateless gateways in front of one cluster: real `shoal gateway --cluster` processes,
driven over HTTP. An upload begun on one finishes on another; concurrent pushes of one tag
through two gateways leave every replica agreeing on one value."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cluster.clustertest import ClusterProcesses, free_port, running_cluster
from support import free_port_block
from test_faults import wait_converged

from node.cluster import placement
from node.rpc.client import RemoteNode

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def http(method: str, url: str, data: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def start_gateway(cluster: ClusterProcesses, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "gateway", "--cluster", str(cluster.file),
             "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if http("GET", f"{base}/v2/")[0] == 200:
                return proc, base
        except OSError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_two_gateways_share_uploads_and_agree_on_a_contested_tag(scratch: Path) -> None:
    with running_cluster(scratch, n=3, replicas=2) as cluster:
        (gw_a, a), (gw_b, b) = (start_gateway(cluster, scratch / "gw-a.log"),
                                start_gateway(cluster, scratch / "gw-b.log"))
        try:
            repo = "shared/app"
            # An upload begun on one gateway, continued and finished on the other.
            layer = os.urandom(3 << 20)
            status, headers, _ = http("POST", f"{a}/v2/{repo}/blobs/uploads/")
            assert status == 202
            location = headers["Location"]
            half = len(layer) // 2
            status, headers, _ = http(
                "PATCH", f"{b}{location}", layer[:half],
                {"Content-Type": "application/octet-stream",
                 "Content-Range": f"0-{half - 1}"})
            assert status == 202, headers
            status, _, body = http(
                "PUT", f"{a}{headers['Location']}&digest={digest_of(layer)}"
                if "?" in headers["Location"] else
                f"{a}{headers['Location']}?digest={digest_of(layer)}",
                layer[half:], {"Content-Type": "application/octet-stream"})
            assert status == 201, body
            for base in (a, b):
                status, _, got = http("GET", f"{base}/v2/{repo}/blobs/{digest_of(layer)}")
                assert status == 200 and got == layer

            config = b'{"architecture":"amd64","os":"linux"}'
            status, _, _ = http("POST", f"{b}/v2/{repo}/blobs/uploads/?digest="
                                f"{digest_of(config)}", config,
                                {"Content-Type": "application/octet-stream"})
            assert status == 201

            def manifest(n: int) -> bytes:
                return json.dumps({
                    "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                               "digest": digest_of(config), "size": len(config)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                "digest": digest_of(layer), "size": len(layer)}],
                    "annotations": {"n": str(n)}}).encode()

            def push(n: int) -> int:
                base = (a, b)[n % 2]
                return http("PUT", f"{base}/v2/{repo}/manifests/latest", manifest(n),
                            {"Content-Type": OCI_MANIFEST})[0]

            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(push, range(40))) == {201}

            await wait_converged(cluster)
            answers = set()
            for base in (a, b):
                status, _, body = http("GET", f"{base}/v2/{repo}/manifests/latest",
                                       headers={"Accept": OCI_MANIFEST})
                assert status == 200
                answers.add(digest_of(body))
            members = list(cluster.config.members)
            for member in placement.owners(members, placement.REPOSITORY, repo,
                                           cluster.config.replicas):
                node = RemoteNode(member.address)
                try:
                    found = await node.get_manifest(repo, "latest")
                    assert found is not None
                    answers.add(found.digest)
                finally:
                    await node.close()
            assert len(answers) == 1, answers
        finally:
            for proc in (gw_a, gw_b):
                proc.terminate()
                proc.wait(20)


def test_shoal_cluster_runs_the_topology_as_plain_processes(tmp_path: Path) -> None:
    port = free_port()
    base_port = free_port_block(4)  # members listen on base+1 .. base+3
    log = tmp_path / "cluster.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shoal", "cluster", "--data", str(tmp_path / "c"),
             "--listen", f"127.0.0.1:{port}", "--base-port", str(base_port),
             "--repair-interval", "0.5"], stdout=out, stderr=subprocess.STDOUT)

    def output() -> str:
        return log.read_text(errors="replace")[-4000:]

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http("GET", f"http://127.0.0.1:{port}/v2/")[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, output()
            time.sleep(0.2)
        blob = os.urandom(1 << 20)
        status, _, _ = http("POST", f"http://127.0.0.1:{port}/v2/x/y/blobs/uploads/?digest="
                            f"{digest_of(blob)}", blob,
                            {"Content-Type": "application/octet-stream"})
        assert status == 201
        while True:
            shown = subprocess.run(
                [sys.executable, "-m", "shoal", "status", "--cluster",
                 str(tmp_path / "c" / "cluster.toml")], capture_output=True, text=True,
                timeout=60)
            if shown.returncode == 0:
                break
            assert time.monotonic() < deadline, shown.stdout + shown.stderr
            time.sleep(0.5)
        assert "node1" in shown.stdout and "node3" in shown.stdout
        assert "converged" in shown.stdout
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, output()


def test_shoal_cluster_refuses_a_taken_port(tmp_path: Path) -> None:
    base_port = free_port_block(4)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base_port + 2))
        taken.listen()
        shown = subprocess.run(
            [sys.executable, "-m", "shoal", "cluster", "--data", str(tmp_path / "c"),
             "--listen", f"127.0.0.1:{free_port()}", "--base-port", str(base_port)],
            capture_output=True, text=True, timeout=60)
    assert shown.returncode != 0
    assert f"127.0.0.1:{base_port + 2}" in shown.stderr and "in use" in shown.stderr
    assert not (tmp_path / "c" / "node1").exists()
