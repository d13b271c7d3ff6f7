"""The small HTTP client the fan-out benchmark runs inside each namespace (`ip netns exec`).

Standard library only, so it starts fast and costs little next to what it measures.

    python -m benchmarks.fanout_client probe URL [--timeout S]       # until URL answers 200
    python -m benchmarks.fanout_client push BASE REPO FILE DIGEST     # one monolithic upload
    python -m benchmarks.fanout_client fetch URL DIGEST SIZE          # timed GET, see below

`fetch` prints `ready`, waits for a line on stdin, then GETs URL, discarding the bytes but
hashing them, and prints one JSON line: when it started and ended (time.monotonic, a clock
shared by every process on the machine whatever its namespace), bytes, whether the SHA-256
matched DIGEST, and its own CPU seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import sys
import time
import urllib.parse
from pathlib import Path

PIECE = 1 << 20
MAX_REDIRECTS = 5


def _connection(url: urllib.parse.SplitResult, timeout: float) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80,
                                      timeout=timeout)


def _path(url: urllib.parse.SplitResult) -> str:
    return url.path + (f"?{url.query}" if url.query else "")


def probe(url: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    parts = urllib.parse.urlsplit(url)
    last = "no answer"
    while time.monotonic() < deadline:
        conn = _connection(parts, 2.0)
        try:
            conn.request("GET", _path(parts))
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return 0
            last = f"HTTP {response.status}"
        except OSError as error:
            last = str(error)
        finally:
            conn.close()
        time.sleep(0.1)
    print(f"{url}: {last} after {timeout:.0f} s", file=sys.stderr)
    return 1


def push(base: str, repo: str, file: Path, digest: str) -> int:
    """POST an upload session, then PUT the whole file into it (the OCI monolithic flow)."""
    parts = urllib.parse.urlsplit(base)
    conn = _connection(parts, 600.0)
    conn.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    response = conn.getresponse()
    response.read()
    if response.status != 202:
        print(f"POST upload: HTTP {response.status}", file=sys.stderr)
        return 1
    location = urllib.parse.urlsplit(response.getheader("Location", ""))
    sep = "&" if location.query else "?"
    target = _path(location) + f"{sep}digest={urllib.parse.quote(digest)}"
    with file.open("rb") as body:
        conn.request("PUT", target, body=body,
                     headers={"Content-Length": str(file.stat().st_size),
                              "Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        text = response.read()
    if response.status != 201:
        print(f"PUT upload: HTTP {response.status}: {text[:300]!r}", file=sys.stderr)
        return 1
    return 0


def fetch(url: str, digest: str, size: int) -> int:
    print("ready", flush=True)
    if not sys.stdin.readline():
        return 1  # the harness went away before the start
    started = time.monotonic()
    cpu = time.process_time()
    result: dict[str, object] = {"started": started}
    digester = hashlib.sha256()
    received = 0
    first_byte = None
    try:
        for _ in range(MAX_REDIRECTS):
            parts = urllib.parse.urlsplit(url)
            conn = _connection(parts, 600.0)
            conn.request("GET", _path(parts))
            response = conn.getresponse()
            if response.status in (301, 302, 303, 307, 308):
                url = urllib.parse.urljoin(url, response.getheader("Location", ""))
                response.read()
                conn.close()
                continue
            result["status"] = response.status
            while piece := response.read(PIECE):
                if first_byte is None:
                    first_byte = time.monotonic()
                digester.update(piece)
                received += len(piece)
            conn.close()
            break
    except OSError as error:
        result["error"] = str(error)
    result.update(ended=time.monotonic(), first_byte=first_byte, bytes=received,
                  digest_ok=received == size and f"sha256:{digester.hexdigest()}" == digest,
                  cpu_seconds=time.process_time() - cpu)
    print(json.dumps(result), flush=True)
    return 0 if result["digest_ok"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("probe")
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=60.0)
    u = commands.add_parser("push")
    u.add_argument("base")
    u.add_argument("repo")
    u.add_argument("file", type=Path)
    u.add_argument("digest")
    f = commands.add_parser("fetch")
    f.add_argument("url")
    f.add_argument("digest")
    f.add_argument("size", type=int)
    args = parser.parse_args()
    if args.command == "probe":
        return probe(args.url, args.timeout)
    if args.command == "push":
        return push(args.base, args.repo, args.file, args.digest)
    return fetch(args.url, args.digest, args.size)


if __name__ == "__main__":
    sys.exit(main())
