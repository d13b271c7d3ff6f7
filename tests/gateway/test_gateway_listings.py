"""Content discovery: tag lists, the catalog and the referrers API."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

from gwtest import OCI_EMPTY, OCI_INDEX, OCI_MANIFEST, OpenRegistry, Registry, error_code, sha256


def _next(link: str) -> tuple[str, dict[str, list[str]]]:
    assert link.endswith('>; rel="next"'), link
    url = urlsplit(link[1:link.index(">")])
    return url.path, parse_qs(url.query)


async def _tagged(reg: Registry, repo: str, tags: list[str]) -> None:
    _, body = await reg.push_image(repo, tags[0])
    for tag in tags[1:]:
        await reg.push_manifest(repo, tag, json.loads(body))


async def test_tags_list_and_pagination(open_registry: OpenRegistry) -> None:
    tags = ["v1", "latest", "v10", "v2", "alpha", "v1.1"]
    async with open_registry() as reg:
        await _tagged(reg, "lib/app", tags)
        r = await reg.http.get("/v2/lib/app/tags/list")
        assert r.status == 200
        assert await r.json() == {"name": "lib/app", "tags": sorted(tags)}
        assert "Link" not in r.headers
        seen: list[str] = []
        params = {"n": "4"}
        while True:
            r = await reg.http.get("/v2/lib/app/tags/list", params=params)
            page = (await r.json())["tags"]
            seen += page
            if "Link" not in r.headers:
                break
            assert len(page) == 4
            path, query = _next(r.headers["Link"])
            assert path == "/v2/lib/app/tags/list"
            params = {"n": query["n"][0], "last": query["last"][0]}
        assert seen == sorted(tags)
        r = await reg.http.get("/v2/lib/app/tags/list", params={"last": "v1"})
        assert (await r.json())["tags"] == ["v1.1", "v10", "v2"]
        r = await reg.http.get("/v2/lib/app/tags/list", params={"n": "0"})
        assert (await r.json())["tags"] == []
        assert "Link" not in r.headers
        # Exactly n left: no Link to an empty page.
        r = await reg.http.get("/v2/lib/app/tags/list", params={"n": "2", "last": "v10"})
        assert (await r.json())["tags"] == ["v2"]
        assert "Link" not in r.headers


async def test_tags_list_errors(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        r = await reg.http.get("/v2/lib/nothing/tags/list")
        assert r.status == 404
        assert await error_code(r) == "NAME_UNKNOWN"
        await reg.push_image("lib/app", "v1")
        for n in ("-1", "abc", "1e3", "9" * 30):
            r = await reg.http.get("/v2/lib/app/tags/list", params={"n": n})
            assert r.status == 400, n
            assert await error_code(r) == "PAGINATION_NUMBER_INVALID"
        r = await reg.http.get("/v2/lib/app/tags/list", params={"n": "999999999"})
        assert r.status == 200


async def test_catalog(open_registry: OpenRegistry) -> None:
    repos = ["b/one", "a/two", "c", "a/one"]
    async with open_registry() as reg:
        for repo in repos:
            await reg.push_image(repo, "v1")
        r = await reg.http.get("/v2/_catalog")
        assert await r.json() == {"repositories": sorted(repos)}
        r = await reg.http.get("/v2/_catalog", params={"n": "3"})
        assert (await r.json())["repositories"] == sorted(repos)[:3]
        path, query = _next(r.headers["Link"])
        assert path == "/v2/_catalog"
        r = await reg.http.get(path, params={"n": query["n"][0], "last": query["last"][0]})
        assert (await r.json())["repositories"] == sorted(repos)[3:]
        assert "Link" not in r.headers


async def test_referrers(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        subject, subject_body = await reg.push_image("lib/app", "v1")
        url = f"/v2/lib/app/referrers/{subject}"
        r = await reg.http.get(url)
        assert r.status == 200
        assert r.headers["Content-Type"] == OCI_INDEX
        assert await r.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        empty = await reg.push_blob("lib/app", b"{}")
        pushed = {}
        for artifact_type in ("application/vnd.example.sbom", "application/vnd.example.sig"):
            manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "artifactType": artifact_type,
                        "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
                        "layers": [],
                        "subject": {"mediaType": OCI_MANIFEST, "digest": subject,
                                    "size": len(subject_body)},
                        "annotations": {"kind": artifact_type}}
            body = json.dumps(manifest).encode()
            await reg.push_manifest("lib/app", sha256(body), manifest)
            pushed[artifact_type] = (sha256(body), len(body))
        r = await reg.http.get(url)
        assert "OCI-Filters-Applied" not in r.headers
        manifests = (await r.json())["manifests"]
        assert sorted(m["artifactType"] for m in manifests) == sorted(pushed)
        for m in manifests:
            assert (m["digest"], m["size"]) == pushed[m["artifactType"]]
            assert m["mediaType"] == OCI_MANIFEST
            assert m["annotations"] == {"kind": m["artifactType"]}
        r = await reg.http.get(url, params={"artifactType": "application/vnd.example.sig"})
        assert r.headers["OCI-Filters-Applied"] == "artifactType"
        manifests = (await r.json())["manifests"]
        assert [m["digest"] for m in manifests] == [pushed["application/vnd.example.sig"][0]]
        # Deleting a referrer takes it out of the list.
        await reg.http.delete(f"/v2/lib/app/manifests/{manifests[0]['digest']}")
        r = await reg.http.get(url)
        assert len((await r.json())["manifests"]) == 1


async def test_referrers_errors(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        r = await reg.http.get("/v2/lib/app/referrers/sha256:nope")
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"
        r = await reg.http.get(f"/v2/lib/unknown/referrers/{sha256(b'x')}")
        assert r.status == 200
        assert (await r.json())["manifests"] == []
