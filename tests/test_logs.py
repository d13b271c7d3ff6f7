"""Structured logs follow a request from the gateway into the node that serves it."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.request
from pathlib import Path

from support import SHOAL, free_port, stop, wait_until

SHOAL_JSON = [*SHOAL, "--log-format", "json"]


def json_lines(path: Path) -> list[dict[str, object]]:
    # Every line must be JSON: json.loads fails the test on any other.
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_request_id_follows_a_push_from_gateway_to_node(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    node_log, gateway_log = tmp_path / "node.log", tmp_path / "gateway.log"
    http = free_port()
    with node_log.open("wb") as out:
        node = subprocess.Popen([*SHOAL_JSON, "--log-level", "DEBUG", "node", "--data",
                                 str(tmp_path / "data"), "--listen", "127.0.0.1:0",
                                 "--port-file", str(port_file)], stderr=out)
    gateway = None
    try:
        wait_until(lambda: port_file.exists() and port_file.read_text().strip(), "node")
        with gateway_log.open("wb") as out:
            gateway = subprocess.Popen(
                [*SHOAL_JSON, "gateway", "--node", f"127.0.0.1:{port_file.read_text().strip()}",
                 "--listen", f"127.0.0.1:{http}"], stderr=out)
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/").status == 200,
                   "gateway")
        blob = os.urandom(100_000)
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{http}/v2/lib/app/blobs/uploads/?digest={digest}", data=blob,
            method="POST", headers={"X-Request-Id": "push-0001",
                                    "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
            assert response.headers["X-Request-Id"] == "push-0001"
        # A request without an id, or with an odd one, is given a fresh one.
        odd = urllib.request.Request(f"http://127.0.0.1:{http}/v2/",
                                     headers={"X-Request-Id": "a b\tc"})
        with urllib.request.urlopen(odd, timeout=30) as response:
            assert response.headers["X-Request-Id"] not in ("", "a b\tc")
    finally:
        for proc in (gateway, node):
            if proc is not None:
                stop(proc)
    gateway_events = [e for e in json_lines(gateway_log) if e.get("request_id") == "push-0001"]
    node_events = [e for e in json_lines(node_log) if e.get("request_id") == "push-0001"]
    assert any(e["logger"] == "aiohttp.access" for e in gateway_events), gateway_events
    calls = {str(e["message"]) for e in node_events}
    assert {"call CreateUpload", "call FinishUpload"} <= calls, calls
    assert all({"time", "level", "logger", "message"} <= set(e) for e in node_events)
