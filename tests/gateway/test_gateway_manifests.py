"""Manifests: push and pull by tag and digest, validation, deletes."""

from __future__ import annotations

import json

from gwtest import (
    CONFIG,
    LAYER,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    OpenRegistry,
    error_code,
    sha256,
    sha512,
)

from gateway.context import GatewayConfig

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def test_push_and_pull_by_tag_and_digest(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest, body = await reg.push_image("lib/app", "v1")
        for reference in ("v1", digest):
            r = await reg.http.get(f"/v2/lib/app/manifests/{reference}",
                                   headers={"Accept": OCI_MANIFEST})
            assert r.status == 200
            assert r.headers["Content-Type"] == OCI_MANIFEST
            assert r.headers["Docker-Content-Digest"] == digest
            assert r.headers["Content-Length"] == str(len(body))
            assert await r.read() == body
            r = await reg.http.head(f"/v2/lib/app/manifests/{reference}")
            assert r.status == 200
            assert r.headers["Docker-Content-Digest"] == digest
            assert r.headers["Content-Length"] == str(len(body))
        r = await reg.http.get("/v2/lib/app/manifests/v1", headers={"If-None-Match": f'"{digest}"'})
        assert r.status == 304


async def test_put_response_headers(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        config = await reg.push_blob("lib/app", b"{}")
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": CONFIG, "digest": config, "size": 2},
                           "layers": []}).encode()
        r = await reg.http.put("/v2/lib/app/manifests/latest", data=body,
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
        assert r.headers["Location"] == f"/v2/lib/app/manifests/{sha256(body)}"
        assert r.headers["Docker-Content-Digest"] == sha256(body)
        assert "OCI-Subject" not in r.headers


async def test_docker_schema2_and_manifest_list(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        config = await reg.push_blob("lib/app", b'{"os":"linux"}')
        layer = await reg.push_blob("lib/app", b"tar bytes")
        manifest = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                               "digest": config, "size": 14},
                    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                "digest": layer, "size": 9}]}
        child, child_body = await reg.push_manifest("lib/app", "amd64", manifest,
                                                    DOCKER_MANIFEST)
        listing = {"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": child, "size": len(child_body),
             "platform": {"architecture": "amd64", "os": "linux"}}]}
        index_digest, _ = await reg.push_manifest("lib/app", "latest", listing, DOCKER_LIST)
        r = await reg.http.get("/v2/lib/app/manifests/latest")
        assert r.headers["Content-Type"] == DOCKER_LIST
        assert r.headers["Docker-Content-Digest"] == index_digest
        # Never converted, whatever the client says it accepts.
        r = await reg.http.get("/v2/lib/app/manifests/amd64", headers={"Accept": OCI_MANIFEST})
        assert r.status == 200
        assert r.headers["Content-Type"] == DOCKER_MANIFEST


async def test_index_needs_its_manifests(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256(b"absent"), "size": 6}]}
        r = await reg.http.put("/v2/lib/app/manifests/multi", data=json.dumps(index),
                               headers={"Content-Type": OCI_INDEX})
        assert r.status == 400
        assert await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
        child, body = await reg.push_image("lib/app", "child")
        index["manifests"] = [{"mediaType": OCI_MANIFEST, "digest": child, "size": len(body)}]
        digest, _ = await reg.push_manifest("lib/app", "multi", index, OCI_INDEX)
        r = await reg.http.get(f"/v2/lib/app/manifests/{digest}")
        assert r.headers["Content-Type"] == OCI_INDEX


async def test_manifest_referring_to_missing_blob(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        config = await reg.push_blob("lib/app", b"{}")
        elsewhere = await reg.push_blob("lib/other", b"layer in another repo")
        for missing in (sha256(b"never pushed"), elsewhere):
            body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                               "config": {"mediaType": CONFIG, "digest": config, "size": 2},
                               "layers": [{"mediaType": LAYER, "digest": missing, "size": 1}]})
            r = await reg.http.put("/v2/lib/app/manifests/v1", data=body,
                                   headers={"Content-Type": OCI_MANIFEST})
            assert r.status == 400
            assert await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
        # Nothing of the refused manifest is visible.
        r = await reg.http.get("/v2/lib/app/manifests/v1")
        assert r.status == 404
        assert await error_code(r) == "MANIFEST_UNKNOWN"


async def test_malformed_manifests(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        config = await reg.push_blob("lib/app", b"{}")
        good_config = {"mediaType": CONFIG, "digest": config, "size": 2}
        cases: list[tuple[str, bytes]] = [
            (OCI_MANIFEST, b"{not json"),
            (OCI_MANIFEST, b"[]"),
            (OCI_MANIFEST, b"\xff\xfe"),
            (OCI_MANIFEST, b"[" * 100_000 + b"]" * 100_000),
            (OCI_MANIFEST, json.dumps({"schemaVersion": 2, "layers": []}).encode()),
            (OCI_MANIFEST, json.dumps({"schemaVersion": 1, "config": good_config,
                                       "layers": []}).encode()),
            (OCI_MANIFEST, json.dumps({"schemaVersion": 2, "config": good_config}).encode()),
            (OCI_MANIFEST, json.dumps({"schemaVersion": 2, "config": good_config,
                                       "layers": [{"mediaType": LAYER}]}).encode()),
            (OCI_MANIFEST, json.dumps({"schemaVersion": 2, "config": good_config,
                                       "layers": [{"mediaType": LAYER, "digest": "sha256:1",
                                                   "size": 1}]}).encode()),
            (OCI_MANIFEST, json.dumps({"schemaVersion": 2, "config": good_config,
                                       "layers": [], "annotations": {"a": 1}}).encode()),
            # mediaType and Content-Type disagree.
            (OCI_INDEX, json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                                    "config": good_config, "layers": []}).encode()),
            (OCI_INDEX, json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX}).encode()),
            ("application/vnd.docker.distribution.manifest.v1+prettyjws",
             json.dumps({"schemaVersion": 1, "name": "lib/app"}).encode()),
            ("", json.dumps({"schemaVersion": 2, "mediaType": "bad\r\nheader"}).encode()),
            ("", json.dumps({"schemaVersion": 2}).encode()),
        ]
        for content_type, body in cases:
            headers = {"Content-Type": content_type} if content_type else {}
            r = await reg.http.put("/v2/lib/app/manifests/bad", data=body, headers=headers)
            assert r.status == 400, body[:100]
            assert await error_code(r) == "MANIFEST_INVALID", body[:100]
        r = await reg.http.get("/v2/lib/app/manifests/bad")
        assert r.status == 404


async def test_media_type_from_body_when_content_type_vague(open_registry: OpenRegistry
                                                            ) -> None:
    async with open_registry() as reg:
        config = await reg.push_blob("lib/app", b"{}")
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": CONFIG, "digest": config, "size": 2},
                           "layers": []}).encode()
        r = await reg.http.put("/v2/lib/app/manifests/v1", data=body,
                               headers={"Content-Type": "application/json"})
        assert r.status == 201
        r = await reg.http.get("/v2/lib/app/manifests/v1")
        assert r.headers["Content-Type"] == OCI_MANIFEST


async def test_oversized_manifest(open_registry: OpenRegistry) -> None:
    async with open_registry(GatewayConfig(max_manifest_size=1000)) as reg:
        body = json.dumps({"schemaVersion": 2, "padding": "x" * 2000}).encode()
        r = await reg.http.put("/v2/lib/app/manifests/big", data=body,
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 413
        assert await error_code(r) == "MANIFEST_INVALID"

        async def chunked() -> object:  # no Content-Length to refuse early on
            for _ in range(20):
                yield b" " * 100

        r = await reg.http.put("/v2/lib/app/manifests/big", data=chunked(),
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 413


async def test_put_by_digest(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        config = await reg.push_blob("lib/app", b"{}")
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": CONFIG, "digest": config, "size": 2},
                           "layers": []}).encode()
        headers = {"Content-Type": OCI_MANIFEST}
        r = await reg.http.put(f"/v2/lib/app/manifests/{sha256(b'other')}", data=body,
                               headers=headers)
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"
        for digest in (sha256(body), sha512(body)):
            r = await reg.http.put(f"/v2/lib/app/manifests/{digest}", data=body,
                                   headers=headers)
            assert r.status == 201, await r.text()
            assert r.headers["Docker-Content-Digest"] == digest
            r = await reg.http.get(f"/v2/lib/app/manifests/{digest}")
            assert await r.read() == body
        # Pushed by digest only: no tag appeared.
        r = await reg.http.get("/v2/lib/app/tags/list")
        assert (await r.json())["tags"] == []


async def test_bad_references(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        for reference in ("-leading-dash", "a" * 129, "sha256:short", "md5:" + "0" * 32):
            r = await reg.http.get(f"/v2/lib/app/manifests/{reference}")
            assert r.status == 404, reference
            assert await error_code(r) == "MANIFEST_UNKNOWN"
        r = await reg.http.put("/v2/lib/app/manifests/-bad", data=b"{}",
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 400
        assert await error_code(r) == "TAG_INVALID"
        r = await reg.http.put("/v2/lib/app/manifests/sha1:" + "0" * 40, data=b"{}",
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 400
        assert await error_code(r) == "DIGEST_INVALID"


async def test_delete_tag_keeps_manifest(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest, _ = await reg.push_image("lib/app", "v1")
        r = await reg.http.delete("/v2/lib/app/manifests/v1")
        assert r.status == 202
        assert (await reg.http.get("/v2/lib/app/manifests/v1")).status == 404
        assert (await reg.http.get(f"/v2/lib/app/manifests/{digest}")).status == 200
        r = await reg.http.delete("/v2/lib/app/manifests/v1")
        assert r.status == 404
        assert await error_code(r) == "MANIFEST_UNKNOWN"


async def test_delete_by_digest_removes_manifest_and_tags(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        digest, body = await reg.push_image("lib/app", "v1")
        await reg.push_manifest("lib/app", "v1-alias", json.loads(body))
        r = await reg.http.delete(f"/v2/lib/app/manifests/{digest}")
        assert r.status == 202
        for reference in (digest, "v1", "v1-alias"):
            r = await reg.http.get(f"/v2/lib/app/manifests/{reference}")
            assert r.status == 404
        r = await reg.http.delete(f"/v2/lib/app/manifests/{digest}")
        assert r.status == 404


async def test_artifact_with_subject(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        subject, subject_body = await reg.push_image("lib/app", "v1")
        empty = await reg.push_blob("lib/app", b"{}")
        sbom = await reg.push_blob("lib/app", b"sbom contents")
        artifact = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "artifactType": "application/spdx+json",
                    "config": {"mediaType": OCI_EMPTY, "digest": empty, "size": 2},
                    "layers": [{"mediaType": "application/spdx+json", "digest": sbom,
                                "size": 13}],
                    "subject": {"mediaType": OCI_MANIFEST, "digest": subject,
                                "size": len(subject_body)},
                    "annotations": {"org.example": "yes"}}
        body = json.dumps(artifact).encode()
        r = await reg.http.put(f"/v2/lib/app/manifests/{sha256(body)}", data=body,
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
        assert r.headers["OCI-Subject"] == subject
        # A subject need not exist (yet).
        artifact["subject"] = {"mediaType": OCI_MANIFEST, "digest": sha256(b"later"),
                               "size": 5}
        body = json.dumps(artifact).encode()
        r = await reg.http.put(f"/v2/lib/app/manifests/{sha256(body)}", data=body,
                               headers={"Content-Type": OCI_MANIFEST})
        assert r.status == 201
        assert r.headers["OCI-Subject"] == sha256(b"later")


async def test_other_media_types_are_stored_as_is(open_registry: OpenRegistry) -> None:
    async with open_registry() as reg:
        blob = await reg.push_blob("lib/app", b"payload")
        kind = "application/vnd.oci.artifact.manifest.v1+json"
        manifest = {"mediaType": kind, "artifactType": "application/x-example",
                    "blobs": [{"mediaType": "application/octet-stream", "digest": blob,
                               "size": 7}]}
        digest, body = await reg.push_manifest("lib/app", "artifact", manifest, kind)
        r = await reg.http.get("/v2/lib/app/manifests/artifact")
        assert r.headers["Content-Type"] == kind
        assert await r.read() == body
        manifest["blobs"][0]["digest"] = sha256(b"missing")  # type: ignore[index]
        r = await reg.http.put("/v2/lib/app/manifests/artifact2", data=json.dumps(manifest),
                               headers={"Content-Type": kind})
        assert r.status == 400
        assert await error_code(r) == "MANIFEST_BLOB_UNKNOWN"
        assert digest
