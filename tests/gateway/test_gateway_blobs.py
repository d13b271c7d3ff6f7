"""Blob reads and deletes over HTTP against a real node."""

from __future__ import annotations

import os

from gwtest import OpenRegistry, error_code, sha256


async def test_head_and_get_whole_blob(open_registry: OpenRegistry) -> None:
    data = os.urandom(3 * (1 << 20) + 17)  # several read pieces, not a round size
    async with open_registry() as reg:
        digest = await reg.push_blob("lib/app", data)
        r = await reg.http.head(f"/v2/lib/app/blobs/{digest}")
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert r.headers["Docker-Content-Digest"] == digest
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["ETag"] == f'"{digest}"'
        assert await r.read() == b""
        r = await reg.http.get(f"/v2/lib/app/blobs/{digest}")
        assert r.status == 200
        assert r.headers["Content-Length"] == str(len(data))
        assert await r.read() == data


async def test_range_reads(open_registry: OpenRegistry) -> None:
    data = os.urandom(200_000)
    async with open_registry() as reg:
        digest = await reg.push_blob("lib/app", data)
        url = f"/v2/lib/app/blobs/{digest}"
        for header, start, end in [("bytes=0-99", 0, 99), ("bytes=150000-", 150000, 199999),
                                   ("bytes=-10", 199990, 199999),
                                   ("bytes=199000-999999999", 199000, 199999)]:
            r = await reg.http.get(url, headers={"Range": header})
            assert r.status == 206, header
            assert r.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
            assert await r.read() == data[start:end + 1]
        r = await reg.http.get(url, headers={"Range": "bytes=200000-"})
        assert r.status == 416
        assert r.headers["Content-Range"] == f"bytes */{len(data)}"
        assert await error_code(r) == "RANGE_INVALID"
        # Ranges we do not serve (several, garbage) are ignored: the whole blob comes back.
        for header in ["bytes=0-1,5-6", "lines=1-2", "bytes=9-3", "bytes=" + "9" * 40 + "-"]:
            r = await reg.http.get(url, headers={"Range": header})
            assert r.status == 200, header
            assert len(await r.read()) == len(data)


async def test_if_none_match(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = await reg.push_blob("lib/app", b"cached")
        r = await reg.http.get(f"/v2/lib/app/blobs/{digest}",
                               headers={"If-None-Match": f'"{digest}"'})
        assert r.status == 304


async def test_unknown_blob(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = sha256(b"never pushed")
        for method in ("GET", "DELETE"):
            r = await reg.http.request(method, f"/v2/lib/app/blobs/{digest}")
            assert r.status == 404
            assert await error_code(r) == "BLOB_UNKNOWN"
        r = await reg.http.head(f"/v2/lib/app/blobs/{digest}")
        assert r.status == 404


async def test_blob_is_scoped_to_its_repository(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = await reg.push_blob("team/a", b"private bytes")
        r = await reg.http.get(f"/v2/team/b/blobs/{digest}")
        assert r.status == 404
        assert await error_code(r) == "BLOB_UNKNOWN"


async def test_delete_blob(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = await reg.push_blob("lib/app", b"to delete")
        r = await reg.http.delete(f"/v2/lib/app/blobs/{digest}")
        assert r.status == 202
        r = await reg.http.head(f"/v2/lib/app/blobs/{digest}")
        assert r.status == 404


async def test_empty_blob(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = await reg.push_blob("lib/app", b"")
        r = await reg.http.get(f"/v2/lib/app/blobs/{digest}")
        assert r.status == 200
        assert r.headers["Content-Length"] == "0"
        assert await r.read() == b""


async def test_malformed_digest(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for bad in ["sha256:abc", "sha256:" + "G" * 64, "md5:" + "a" * 32, "nocolon",
                    "sha256:" + "A" * 64]:
            r = await reg.http.get(f"/v2/lib/app/blobs/{bad}")
            assert r.status == 400, bad
            assert await error_code(r) == "DIGEST_INVALID"
