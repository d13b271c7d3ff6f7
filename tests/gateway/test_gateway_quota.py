"""Quotas through the gateway: a push that would take a repository past its quota is
refused with DENIED before anything becomes visible; pushes under it, of what the
repository already holds, and to repositories without a quota go through."""

from __future__ import annotations

import io
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from gwtest import CONFIG, LAYER, OCI_MANIFEST, Registry, sha256

from gateway.app import make_app
from gateway.quota import Quota, Quotas, load, parse_size
from gateway.server import SERVER_SETTINGS
from node.local import LocalNode
from shoal.sizes import format_size

LIMIT = 100_000


@asynccontextmanager
async def registry(data: Path, quotas: Quotas) -> AsyncIterator[Registry]:
    node = await LocalNode.open(data)
    try:
        server = TestServer(make_app(node, quotas=quotas), **SERVER_SETTINGS)
        async with TestClient(server) as http:
            yield Registry(http, node)
    finally:
        await node.close()


def team_quota() -> Quotas:
    return Quotas((Quota(("team/*",), LIMIT),))


async def denied(response: Any) -> str:
    assert response.status == 403, await response.text()
    body = await response.json()
    entry = body["errors"][0]
    assert entry["code"] == "DENIED"
    message: str = entry["message"]
    assert "over its quota of 97.7 KiB" in message
    return message


async def post_blob(reg: Registry, repo: str, data: bytes) -> Any:
    return await reg.http.post(f"/v2/{repo}/blobs/uploads/", params={"digest": sha256(data)},
                               data=io.BytesIO(data),
                               headers={"Content-Type": "application/octet-stream"})


async def test_a_blob_over_quota_is_refused_and_never_visible(tmp_path: Path) -> None:
    async with registry(tmp_path, team_quota()) as reg:
        first = os.urandom(60_000)
        await reg.push_blob("team/app", first)
        second = os.urandom(50_000)
        message = await denied(await post_blob(reg, "team/app", second))
        assert message == ("repository team/app is over its quota of 97.7 KiB "
                           "(107.4 KiB used with this push)")
        # Sizes that round alike are given in bytes as well.
        message = await denied(await post_blob(reg, "team/app", os.urandom(40_001)))
        assert message.endswith("(97.7 KiB used with this push: 100001 of 100000 bytes)")
        head = await reg.http.head(f"/v2/team/app/blobs/{sha256(second)}")
        assert head.status == 404
        assert await reg.node.repository_size("team/app") == 60_000
        # The same bytes again cost nothing; a repository without a quota takes anything.
        await reg.push_blob("team/app", first)
        await reg.push_blob("other/app", second + first)
        # A push that fits still does.
        await reg.push_blob("team/app", os.urandom(40_000))
        assert await reg.node.repository_size("team/app") == 100_000


async def test_a_chunked_upload_is_refused_at_its_end_and_its_session_ends(
        tmp_path: Path) -> None:
    async with registry(tmp_path, team_quota()) as reg:
        data = os.urandom(LIMIT + 1)
        start = await reg.http.post("/v2/team/app/blobs/uploads/")
        location = start.headers["Location"]
        patch = await reg.http.patch(location, data=data[:50_000],
                                     headers={"Content-Range": "0-49999"})
        assert patch.status == 202
        finish = await reg.http.put(location, params={"digest": sha256(data)},
                                    data=data[50_000:])
        await denied(finish)
        status = await reg.http.get(location)
        assert status.status == 404


async def test_a_mount_over_quota_is_refused(tmp_path: Path) -> None:
    async with registry(tmp_path, team_quota()) as reg:
        big = os.urandom(LIMIT + 1)
        digest = await reg.push_blob("other/app", big)
        mount = await reg.http.post("/v2/team/app/blobs/uploads/",
                                    params={"mount": digest, "from": "other/app"})
        await denied(mount)
        assert await reg.node.stat_repository_blob("team/app", digest) is None
        small = await reg.push_blob("other/app", b"small")
        mount = await reg.http.post("/v2/team/app/blobs/uploads/",
                                    params={"mount": small, "from": "other/app"})
        assert mount.status == 201


async def test_a_manifest_over_quota_is_refused_and_retagging_is_free(tmp_path: Path) -> None:
    async with registry(tmp_path, team_quota()) as reg:
        config = json.dumps({"architecture": "amd64"}).encode()
        layer = os.urandom(LIMIT - len(config) - 200)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": CONFIG, "digest": await reg.push_blob(
                        "team/app", config), "size": len(config)},
                    "layers": [{"mediaType": LAYER, "digest": await reg.push_blob(
                        "team/app", layer), "size": len(layer)}]}
        body = json.dumps(manifest).encode()
        assert len(body) > 200
        refused = await reg.http.put("/v2/team/app/manifests/v1", data=body,
                                     headers={"Content-Type": OCI_MANIFEST})
        await denied(refused)
        assert (await reg.http.head("/v2/team/app/manifests/v1")).status == 404
        assert await reg.node.list_manifests("team/app") == []

        # Room made by deleting the layer; then the repository is filled to the brim,
        # and a second tag of a manifest it holds is still free.
        delete = await reg.http.delete(f"/v2/team/app/blobs/{sha256(layer)}")
        assert delete.status == 202
        manifest["layers"] = []
        _, body = await reg.push_manifest("team/app", "v1", manifest)
        await reg.push_blob("team/app", os.urandom(LIMIT - len(config) - len(body)))
        assert await reg.node.repository_size("team/app") == LIMIT
        await reg.push_manifest("team/app", "v2", manifest)
        assert [e.tags for e in await reg.node.list_manifests("team/app")] == [("v1", "v2")]


def test_sizes_read_and_written() -> None:
    assert parse_size(1234) == 1234
    assert parse_size("1 GiB") == 1 << 30
    assert parse_size("1.5MB") == 1_500_000
    assert parse_size("10 kib") == 10_240
    for bad in ("lots", "-1", "1 GiBs", True, -5, 1.5):
        with pytest.raises(ValueError):
            parse_size(bad)
    assert format_size(1 << 30) == "1.0 GiB"
    assert format_size(int(1.2 * (1 << 30))) == "1.2 GiB"
    assert format_size(512) == "512 B"


def test_the_quota_file(tmp_path: Path) -> None:
    path = tmp_path / "quota.toml"
    path.write_text('[[quota]]\nrepositories = ["team/*"]\nmax = "1 GiB"\n\n'
                    '[[quota]]\nrepositories = ["*"]\nmax = 1000\n')
    quotas = load(path)
    assert quotas.limit_for("team/a/b") == 1 << 30
    assert quotas.limit_for("library/alpine") == 1000
    for text, complaint in [('[[quota]]\nmax = 1\n', "repositories"),
                            ('[[quota]]\nrepositories = ["a"]\n', "max"),
                            ('[[quota]]\nrepositories = ["a"]\nmax = "big"\n', "size"),
                            ('[[quota]]\nrepositories = ["a"]\nmax = 1\nx = 2\n', "nothing"),
                            ('[quota]\n', "tables")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=complaint):
            load(path)
