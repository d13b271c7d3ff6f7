"""Blob pushes: monolithic, chunked, streamed, resumed, mounted, and the ways they fail."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator

from gwtest import OpenRegistry, Registry, error_code, send_raw, sha256, sha512

from gateway.context import GatewayConfig


async def _open_session(reg: Registry, repo: str) -> str:
    r = await reg.http.post(f"/v2/{repo}/blobs/uploads/")
    assert r.status == 202, await r.text()
    location = r.headers["Location"]
    assert location.startswith(f"/v2/{repo}/blobs/uploads/")
    assert r.headers["Range"] == "0-0"
    assert r.headers["Docker-Upload-UUID"] == location.rsplit("/", 1)[1]
    assert r.headers["Content-Length"] == "0"
    return location


async def test_chunked_upload(open_registry: OpenRegistry) -> None:
    data = os.urandom(300_000)
    chunks = [data[:100_000], data[100_000:250_000], data[250_000:]]
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        offset = 0
        for chunk in chunks:
            r = await reg.http.patch(location, data=chunk, headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{offset}-{offset + len(chunk) - 1}"})
            assert r.status == 202, await r.text()
            offset += len(chunk)
            assert r.headers["Range"] == f"0-{offset - 1}"
            location = r.headers["Location"]
        r = await reg.http.get(location)
        assert r.status == 204
        assert r.headers["Range"] == f"0-{len(data) - 1}"
        r = await reg.http.put(location, params={"digest": sha256(data)})
        assert r.status == 201, await r.text()
        assert r.headers["Location"] == f"/v2/lib/app/blobs/{sha256(data)}"
        assert r.headers["Docker-Content-Digest"] == sha256(data)
        r = await reg.http.get(f"/v2/lib/app/blobs/{sha256(data)}")
        assert await r.read() == data
        # The session is gone once committed.
        r = await reg.http.get(location)
        assert r.status == 404
        assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"


async def test_streamed_upload_with_final_chunk_in_put(open_registry: OpenRegistry) -> None:
    data = os.urandom(5 * (1 << 20) + 3)

    async def stream() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for start in range(0, 4 << 20, 1 << 16):  # chunked transfer, no length given
            yield bytes(view[start:start + (1 << 16)])

    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        r = await reg.http.patch(location, data=stream())
        assert r.status == 202, await r.text()
        assert r.headers["Range"] == f"0-{(4 << 20) - 1}"
        r = await reg.http.put(r.headers["Location"], params={"digest": sha256(data)},
                               data=io.BytesIO(data[4 << 20:]),
                               headers={"Content-Range": f"{4 << 20}-{len(data) - 1}"})
        assert r.status == 201, await r.text()
        r = await reg.http.get(f"/v2/lib/app/blobs/{sha256(data)}")
        assert await r.read() == data


async def test_sha512_upload(open_registry: OpenRegistry) -> None:
    data = b"hashed the long way"
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        r = await reg.http.patch(location, data=data)
        assert r.status == 202
        r = await reg.http.put(location, params={"digest": sha512(data)})
        assert r.status == 201, await r.text()
        r = await reg.http.get(f"/v2/lib/app/blobs/{sha512(data)}")
        assert r.headers["Docker-Content-Digest"] == sha512(data)
        assert await r.read() == data


async def test_digest_mismatch_commits_nothing(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        wrong = sha256(b"something else")
        # Monolithic.
        r = await reg.http.post("/v2/lib/app/blobs/uploads/", params={"digest": wrong},
                                data=b"actual bytes")
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"
        assert await reg.node.stat_blob(wrong) is None
        assert await reg.node.stat_blob(sha256(b"actual bytes")) is None
        # Chunked: the session is cancelled too, as distribution does.
        location = await _open_session(reg, "lib/app")
        await reg.http.patch(location, data=b"actual bytes")
        r = await reg.http.put(location, params={"digest": wrong})
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"
        assert await reg.node.stat_blob(wrong) is None
        assert (await reg.http.get(location)).status == 404
        r = await reg.http.head(f"/v2/lib/app/blobs/{wrong}")
        assert r.status == 404


async def test_bad_digest_parameters(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for params in [{}, {"digest": ""}, {"digest": "sha256:xyz"},
                       {"digest": "md5:" + "0" * 32}, {"digest": "sha1:" + "0" * 40}]:
            location = await _open_session(reg, "lib/app")
            await reg.http.patch(location, data=b"abc")
            r = await reg.http.put(location, params=params)
            assert r.status == 400, params
            assert await error_code(r) == "DIGEST_INVALID"
            # A refused digest leaves the session for a retry.
            r = await reg.http.get(location)
            assert r.status == 204
            assert r.headers["Range"] == "0-2"
        r = await reg.http.post("/v2/lib/app/blobs/uploads/",
                                params={"digest": "sha384:" + "0" * 96}, data=b"x")
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"


async def test_out_of_order_and_malformed_ranges(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        r = await reg.http.patch(location, data=b"0123456789",
                                 headers={"Content-Range": "0-9"})
        assert r.status == 202
        for content_range in ["0-9", "5-14", "11-20", "20-29"]:  # overlap, gap, far ahead
            r = await reg.http.patch(location, data=b"abcdefghij",
                                     headers={"Content-Range": content_range})
            assert r.status == 416, content_range
            assert r.headers["Range"] == "0-9"
            assert await error_code(r) == "BLOB_UPLOAD_INVALID"
        r = await reg.http.patch(location, data=b"abcdefghij",
                                 headers={"Content-Range": "10-29"})  # length disagrees
        assert r.status == 400
        assert await error_code(r) == "SIZE_INVALID"
        for garbage in ["bytes", "9-3", "-5", "a-b", "1" * 40 + "-" + "2" * 40]:
            r = await reg.http.patch(location, data=b"abc",
                                     headers={"Content-Range": garbage})
            assert r.status in (400, 416), garbage
        # Nothing of the refused chunks went in.
        r = await reg.http.get(location)
        assert r.headers["Range"] == "0-9"
        r = await reg.http.put(location, params={"digest": sha256(b"0123456789")})
        assert r.status == 201


async def test_unknown_upload(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for upload in ["00000000-0000-0000-0000-000000000000", "not-a-uuid", "x" * 300]:
            url = f"/v2/lib/app/blobs/uploads/{upload}"
            for method in ("GET", "PATCH", "DELETE"):
                r = await reg.http.request(method, url, data=b"x")
                assert r.status == 404, (method, upload)
                assert await error_code(r) == "BLOB_UPLOAD_UNKNOWN"
            r = await reg.http.put(url, params={"digest": sha256(b"x")})
            assert r.status == 404
        # A session belongs to its repository.
        location = await _open_session(reg, "lib/app")
        other = location.replace("/lib/app/", "/lib/other/")
        assert (await reg.http.get(other)).status == 404


async def test_cancel_upload(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        await reg.http.patch(location, data=b"partial")
        r = await reg.http.delete(location)
        assert r.status == 204
        assert (await reg.http.get(location)).status == 404
        assert (await reg.http.delete(location)).status == 404


async def test_mount(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest = await reg.push_blob("team/base", b"shared layer")
        r = await reg.http.post("/v2/team/app/blobs/uploads/",
                                params={"mount": digest, "from": "team/base"})
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/team/app/blobs/{digest}"
        assert r.headers["Docker-Content-Digest"] == digest
        r = await reg.http.get(f"/v2/team/app/blobs/{digest}")
        assert await r.read() == b"shared layer"
        # Not in `from`, a bad `from`, a bad digest: a plain session instead.
        for params in [{"mount": sha256(b"absent"), "from": "team/base"},
                       {"mount": digest, "from": "team/elsewhere"},
                       {"mount": digest, "from": "Bad..Name"},
                       {"mount": "sha256:nope", "from": "team/base"},
                       {"mount": digest}]:
            r = await reg.http.post("/v2/team/other/blobs/uploads/", params=params)
            assert r.status == 202, params
            assert "/blobs/uploads/" in r.headers["Location"]


async def test_resume_through_a_new_gateway(open_registry: OpenRegistry, tmp_path: object
                                            ) -> None:
    """The running hash lives in one gateway's memory; another gateway finishing the push
    rehashes the session from storage."""
    first, second = b"a" * 70_000, b"b" * 50_000
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        r = await reg.http.patch(location, data=first)
        assert r.status == 202
    async with open_registry() as reg:
        r = await reg.http.get(location)
        assert r.status == 204
        assert r.headers["Range"] == f"0-{len(first) - 1}"
        r = await reg.http.patch(location, data=second,
                                 headers={"Content-Range": f"{len(first)}-119999"})
        assert r.status == 202
        wrong = sha256(first)
        r = await reg.http.put(location, params={"digest": sha256(first + second)})
        assert r.status == 201, await r.text()
        assert await reg.node.stat_blob(wrong) is None
        r = await reg.http.get(f"/v2/lib/app/blobs/{sha256(first + second)}")
        assert await r.read() == first + second


async def test_truncated_body_commits_nothing(open_registry: OpenRegistry) -> None:
    data = os.urandom(100_000)
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        await send_raw(reg.port, f"PATCH {location} HTTP/1.1\r\nHost: x\r\n"
                       f"Content-Length: {len(data)}\r\n\r\n", data[:40_000])
        # Monolithic push cut short.
        await send_raw(reg.port, f"POST /v2/lib/app/blobs/uploads/?digest={sha256(data)} "
                       f"HTTP/1.1\r\nHost: x\r\nContent-Length: {len(data)}\r\n\r\n",
                       data[:40_000])
        await asyncio.sleep(0.3)  # for the server to notice the lost connections
        r = await reg.http.get(location)
        assert r.status == 204
        assert r.headers["Range"] == "0-0"
        assert await reg.node.stat_blob(sha256(data)) is None
        assert await reg.node.stat_blob(sha256(data[:40_000])) is None


async def test_stalled_body_times_out(open_registry: OpenRegistry) -> None:
    async with open_registry(GatewayConfig(body_idle_timeout=0.2)) as reg:
        location = await _open_session(reg, "lib/app")
        reader, writer = await asyncio.open_connection("127.0.0.1", reg.port)
        writer.write((f"PATCH {location} HTTP/1.1\r\nHost: x\r\n"
                      "Content-Length: 1000\r\n\r\n").encode() + b"x" * 10)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.split()[1] == b"400"
        writer.close()
        await writer.wait_closed()


async def test_empty_upload(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        location = await _open_session(reg, "lib/app")
        r = await reg.http.put(location, params={"digest": sha256(b"")})
        assert r.status == 201, await r.text()
        location = await _open_session(reg, "lib/app")
        r = await reg.http.put(location, params={"digest": sha256(b"not empty")})
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"
