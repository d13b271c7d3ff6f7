"""Bad input of every kind gets a 4xx in the spec's format, never a 500."""

from __future__ import annotations

import asyncio
import itertools
import json

from gwtest import OpenRegistry, error_code, raw_request, sha256


async def test_api_version_header_everywhere(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for path in ("/v2/", "/v2", "/v2/_catalog", "/v2/lib/app/tags/list", "/nowhere",
                     "/v2/BAD/tags/list"):
            r = await reg.http.get(path)
            assert r.headers["Docker-Distribution-API-Version"] == "registry/2.0", path
        r = await reg.http.get("/v2/")
        assert r.status == 200
        assert await r.json() == {}


async def test_invalid_repository_names(open_registry: OpenRegistry) -> None:
    bad_names = ["Upper/case", "a/../b", "..", "a//b", "a/./b", "-a", "a" * 256,
                 "a/" * 127 + "bb", "a%2Fb", "a%20b", "./a", "a/.", "%2e%2e", "a/%2e%2e/b",
                 "a:b", "a@b"]
    async with open_registry() as reg:
        for name in bad_names:
            for method, suffix in [("GET", "/tags/list"), ("GET", "/manifests/latest"),
                                   ("PUT", "/manifests/latest"),
                                   ("HEAD", f"/blobs/{sha256(b'x')}"),
                                   ("POST", "/blobs/uploads/"),
                                   ("GET", f"/referrers/{sha256(b'x')}")]:
                status, body = await raw_request(reg.port, method, f"/v2/{name}{suffix}",
                                                 b"{}")
                assert status == 400, (method, name, suffix)
                if method != "HEAD":
                    assert json.loads(body)["errors"][0]["code"] == "NAME_INVALID"


async def test_unknown_endpoints_and_methods(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for path in ("/", "/v1/", "/v2/lib/app", "/v2/lib/app/unknown/x",
                     "/v2/lib/app/blobs/", "/v2/lib/app/manifests/"):
            r = await reg.http.get(path)
            assert r.status == 404, path
            assert await error_code(r) == "NOT_FOUND"
        for method, path in [("POST", "/v2/lib/app/manifests/latest"),
                             ("PATCH", f"/v2/lib/app/blobs/{sha256(b'x')}"),
                             ("DELETE", "/v2/_catalog"), ("PUT", "/v2/"),
                             ("POST", "/v2/lib/app/tags/list")]:
            r = await reg.http.request(method, path)
            assert r.status == 405, (method, path)
            assert await error_code(r) == "UNSUPPORTED"
            assert r.headers["Allow"]


async def test_absurd_headers(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = await reg.push_blob("lib/app", b"0123456789")
        r = await reg.http.post("/v2/lib/app/blobs/uploads/")
        location = r.headers["Location"]
        for headers in [{"Range": "bytes=" + "9" * 5000 + "-"},
                        {"Range": "bytes=;;--,,"},
                        {"If-None-Match": "," * 4000},
                        {"Accept": "x/" * 2000}]:
            r = await reg.http.get(f"/v2/lib/app/blobs/{digest}", headers=headers)
            assert r.status < 500, headers
            r = await reg.http.get("/v2/lib/app/manifests/none", headers=headers)
            assert r.status == 404
        for headers in [{"Content-Range": "0-" + "9" * 100},
                        {"Content-Range": "99999999999999999-99999999999999999"},
                        {"Content-Range": "\u00e9-\u00e9"}]:
            r = await reg.http.patch(location, data=b"x", headers=headers)
            assert 400 <= r.status < 500, headers
        # The body's Content-Type does not matter to a blob: stored as sent.
        r = await reg.http.patch(location, data=b"x", headers={"Content-Type": "x" * 5000})
        assert r.status == 202
        r = await reg.http.get(f"/v2/lib/app/blobs/{digest}", headers={"X-Long": "y" * 10_000})
        assert r.status == 400  # refused by the HTTP parser itself


async def test_garbage_requests_never_500(open_registry: OpenRegistry) -> None:
    """A little fuzzing: every route, every method, hostile path segments and queries."""
    segments = ["x", "sha256:" + "0" * 64, "sha256:", ":", "%00", "%2e%2e", "..", "a" * 300,
                "sha512:" + "f" * 128, "00000000-0000-0000-0000-000000000000"]
    queries = ["", "?digest=", "?digest=sha256:zz", "?n=-5", "?n=&last=%ff", "?mount=x&from=",
               "?artifactType=%00"]
    paths = ["/v2/lib/{}/tags/list", "/v2/lib/app/manifests/{}", "/v2/lib/app/blobs/{}",
             "/v2/lib/app/blobs/uploads/{}", "/v2/lib/app/referrers/{}", "/v2/_catalog{}"]
    async with open_registry() as reg:
        for template, segment, query, method in itertools.product(
                paths, segments, queries, ["GET", "PUT", "PATCH", "DELETE", "POST"]):
            path = template.format(segment) + query
            r = await reg.http.request(method, path, data=b"\x00garbage",
                                       headers={"Content-Type": "application/json"})
            assert r.status < 500, (method, path, await r.text())


async def test_malformed_http(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for raw in [b"GARBAGE\r\n\r\n",
                    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"PATCH /v2/a/blobs/uploads/x HTTP/1.1\r\nHost: x\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"]:
            reader, writer = await asyncio.open_connection("127.0.0.1", reg.port)
            writer.write(raw)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            await writer.wait_closed()
            assert status_line.split()[1].startswith(b"4"), (raw, status_line)
