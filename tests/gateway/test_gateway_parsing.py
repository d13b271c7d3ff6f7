"""The pure parts: names, digests, ranges, manifest checks, paging, running hashes."""

from __future__ import annotations

import hashlib
import json

import pytest

from gateway.errors import RegistryError
from gateway.hashes import UploadHashes
from gateway.manifest_format import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, parse_manifest
from gateway.names import Digest, is_tag, parse_digest, parse_name
from gateway.pagination import next_link, parse_page
from gateway.ranges import (
    ByteRange,
    Unsatisfiable,
    parse_content_range,
    parse_range,
    upload_range,
)

HEX = "a" * 64


@pytest.mark.parametrize("name", [
    "a", "library/ubuntu", "a.b_c__d---e/f0", "x/" * 100 + "y", "0", "a" * 255,
])
def test_valid_names(name: str) -> None:
    assert parse_name(name) == name


@pytest.mark.parametrize("name", [
    "", "Upper", "a/../b", "..", "a//b", "/a", "a/", "a/./b", "a..b", "a___b", "-a", "a-",
    "a_", "a b", "a%2Fb", "é", "a" * 256, "a\x00b", "a/B",
])
def test_invalid_names(name: str) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_name(name)
    assert caught.value.code.code == "NAME_INVALID"


def test_tags() -> None:
    assert is_tag("latest") and is_tag("_x") and is_tag("V1.2-rc_3") and is_tag("a" * 128)
    for bad in ("", "-x", ".x", "a" * 129, "a/b", "a:b", "a b"):
        assert not is_tag(bad)


def test_digests() -> None:
    assert parse_digest(f"sha256:{HEX}") == Digest("sha256", HEX)
    assert str(parse_digest("sha512:" + "b" * 128)) == "sha512:" + "b" * 128
    assert Digest.of(b"x") == parse_digest("sha256:" + hashlib.sha256(b"x").hexdigest())
    bad = ["", "sha256", f"sha256:{HEX}0", "sha256:" + "A" * 64, f"SHA256:{HEX}",
           "sha512:" + "b" * 64, "md5:" + "a" * 32, "blake3:" + "a" * 64, f":{HEX}",
           f"sha256:{HEX}\n", f"sha256+b64u:{HEX}", "x" * 10_000]
    for text in bad:
        with pytest.raises(RegistryError) as caught:
            parse_digest(text)
        assert caught.value.code.code == "DIGEST_INVALID", text


def test_range_header() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == ByteRange(0, 0)
    assert parse_range("bytes=2-", 10) == ByteRange(2, 9)
    assert parse_range("bytes=2-100", 10) == ByteRange(2, 9)
    assert parse_range("bytes=-3", 10) == ByteRange(7, 9)
    assert parse_range("bytes=-30", 10) == ByteRange(0, 9)
    assert parse_range("bytes = 1 - 2", 10) == ByteRange(1, 2)
    for ignored in ("bytes=1-2,4-5", "bytes=5-1", "items=1-2", "bytes=-", "bytes=x-1",
                    "bytes=" + "1" * 25 + "-"):
        assert parse_range(ignored, 10) is None, ignored
    for unsatisfiable, size in (("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0),
                                ("bytes=-5", 0)):
        with pytest.raises(Unsatisfiable):
            parse_range(unsatisfiable, size)
    assert ByteRange(3, 7).length == 5


def test_content_range() -> None:
    assert parse_content_range("0-99") == ByteRange(0, 99)
    assert parse_content_range("bytes 100-199/1000") == ByteRange(100, 199)
    assert parse_content_range("bytes=5-5/*") == ByteRange(5, 5)
    for bad in ("", "5", "9-3", "a-b", "-1-2", "1-2-3", "1" * 30 + "-" + "2" * 30):
        assert parse_content_range(bad) is None, bad


def test_upload_range() -> None:
    assert upload_range(0) == "0-0"
    assert upload_range(1) == "0-0"
    assert upload_range(100) == "0-99"


def test_paging() -> None:
    assert parse_page({}, 100).n is None
    assert parse_page({"n": "5", "last": "x"}, 100).n == 5
    assert parse_page({"n": "500"}, 100).n == 100
    assert parse_page({"n": ""}, 100).n is None
    for bad in ("-1", "1.0", "0x10", "1" * 10):
        with pytest.raises(RegistryError):
            parse_page({"n": bad}, 100)
    assert next_link("/v2/a/tags/list", 5, "v1+b") == \
        '</v2/a/tags/list?n=5&last=v1%2Bb>; rel="next"'


def test_upload_hashes() -> None:
    hashes = UploadHashes(capacity=2)
    first = hashes.take("u1", 0)
    assert first is not None  # a session at offset 0 needs no history
    first.update(b"abc")
    hashes.keep("u1", 3, first)
    assert hashes.take("u1", 4) is None  # stale: the session moved on elsewhere
    assert hashes.take("u1", 3) is None  # and a stale entry is gone
    hashes.keep("u1", 3, first)
    taken = hashes.take("u1", 3)
    assert taken is first
    assert hashes.take("u1", 3) is None  # taken out: no two requests share it
    for i in range(3):
        hashes.keep(f"u{i}", 1, hashlib.sha256(b"x"))
    assert len(hashes) == 2
    assert hashes.take("u0", 1) is None  # evicted, least recently kept first


def _manifest(**fields: object) -> bytes:
    base: dict[str, object] = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": f"sha256:{'c' * 64}", "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1,
                    "digest": f"sha256:{'1' * 64}"},
                   {"mediaType": "application/vnd.oci.image.layer.v1.tar", "size": 1,
                    "digest": f"sha256:{'1' * 64}"}],
    }
    base.update(fields)
    return json.dumps(base).encode()


def test_parse_image_manifest() -> None:
    parsed = parse_manifest(_manifest(), OCI_MANIFEST)
    assert parsed.media_type == OCI_MANIFEST
    assert parsed.references == [f"sha256:{'c' * 64}", f"sha256:{'1' * 64}"]
    assert parsed.artifact_type == "application/vnd.oci.image.config.v1+json"
    assert parsed.subject == ""
    subject = {"mediaType": OCI_MANIFEST, "digest": f"sha256:{'5' * 64}", "size": 9}
    parsed = parse_manifest(_manifest(subject=subject, artifactType="application/x.sig",
                                      annotations={"k": "v"}), f"{OCI_MANIFEST}; charset=x")
    assert parsed.subject == f"sha256:{'5' * 64}"
    assert parsed.artifact_type == "application/x.sig"
    assert parsed.annotations == {"k": "v"}
    assert f"sha256:{'5' * 64}" not in parsed.references


def test_parse_guesses_media_type() -> None:
    body = json.loads(_manifest())
    del body["mediaType"]
    assert parse_manifest(json.dumps(body).encode(), None).media_type == OCI_MANIFEST
    index = {"schemaVersion": 2, "manifests": []}
    assert parse_manifest(json.dumps(index).encode(), "").media_type == OCI_INDEX
    docker = json.loads(_manifest(mediaType=DOCKER_MANIFEST))
    assert parse_manifest(json.dumps(docker).encode(), "application/json").media_type == \
        DOCKER_MANIFEST


def test_foreign_layers_need_not_be_pushed() -> None:
    foreign = {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
               "digest": f"sha256:{'f' * 64}", "size": 5, "urls": ["https://example/x"]}
    parsed = parse_manifest(_manifest(mediaType=DOCKER_MANIFEST, layers=[foreign]),
                            DOCKER_MANIFEST)
    assert parsed.references == [f"sha256:{'c' * 64}"]


@pytest.mark.parametrize("body", [
    _manifest(schemaVersion=True),
    _manifest(config=None),
    _manifest(layers={}),
    _manifest(subject={"digest": "sha256:1"}),
    _manifest(artifactType=5),
    _manifest(artifactType="not a media type"),
    _manifest(annotations=[]),
    _manifest(layers=[{"mediaType": "x/y", "digest": f"sha256:{HEX}", "size": -1}]),
    _manifest(layers=[{"mediaType": "x/y", "digest": f"sha256:{HEX}", "size": True}]),
    _manifest(layers=[{"mediaType": "x/y", "digest": f"sha256:{HEX}", "size": 1,
                       "urls": "http://x"}]),
    _manifest(mediaType=""),
    _manifest(mediaType=7),
])
def test_parse_rejects(body: bytes) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_manifest(body, None)
    assert caught.value.code.code == "MANIFEST_INVALID"
