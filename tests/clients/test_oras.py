"""oras (the oras-py client library) pushes and pulls artifacts made of plain files."""

from __future__ import annotations

import hashlib
import json
import os
import random
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .engines import Skopeo
from .images import OCI_INDEX, OCI_MANIFEST, ImageMaker, sha256_digest, write_layout
from .registries import RunningRegistry

pytestmark = pytest.mark.clients

ARTIFACT_CONFIG = "application/vnd.shoal.test.config.v1+json"
CHUNK = 64 * 1024


@pytest.fixture
def oras_client(registry: str) -> Any:
    try:
        import oras.client  # type: ignore[import-untyped]
    except ImportError:
        message = "oras-py is not installed: pip install -e '.[dev]'"
        if os.environ.get("SHOAL_TEST_REQUIRE_CLIENTS", "") not in ("", "0"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return oras.client.OrasClient(hostname=registry, insecure=True)


def make_files(directory: Path, seed: int) -> dict[str, bytes]:
    rng = random.Random(seed)
    files = {
        "model.bin": rng.randbytes(700 * 1024 + 17),
        "README.md": b"# artifact\n" + b"compressible line\n" * 4096,
        "empty.txt": b"",
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return files


def get_manifest(registry: str, repo: str, reference: str) -> tuple[bytes, str]:
    request = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{reference}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read(), response.headers.get("Docker-Content-Digest", "")


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_push_then_pull_artifact(
    oras_client: Any,
    registry: str,
    repo: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunked: bool,
) -> None:
    source = tmp_path / "source"
    files = make_files(source, random.SystemRandom().randrange(2**62))
    monkeypatch.chdir(source)  # oras-py wants the files under the working directory
    target = f"{registry}/{repo}:artifact"
    response = oras_client.push(
        target=target,
        files=list(files),
        manifest_annotations={"dev.shoal.test": "oras"},
        do_chunked=chunked,
        chunk_size=CHUNK,
        quiet=True,
    )
    assert response.status_code == 201

    raw, digest_header = get_manifest(registry, repo, "artifact")
    manifest = json.loads(raw)
    assert digest_header == sha256_digest(raw)
    assert manifest["annotations"] == {"dev.shoal.test": "oras"}
    titles = {
        layer["annotations"]["org.opencontainers.image.title"]: layer
        for layer in manifest["layers"]
    }
    assert set(titles) == set(files)
    for name, data in files.items():
        assert titles[name]["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
        assert titles[name]["size"] == len(data)

    out = tmp_path / "out"
    pulled = oras_client.pull(target=target, outdir=str(out))
    assert sorted(Path(path).name for path in pulled) == sorted(files)
    for name, data in files.items():
        assert (out / name).read_bytes() == data

    by_digest = tmp_path / "by-digest"
    oras_client.pull(target=f"{registry}/{repo}@{digest_header}", outdir=str(by_digest))
    for name, data in files.items():
        assert (by_digest / name).read_bytes() == data


def test_tags_and_delete(
    oras_client: Any, registry: str, repo: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "source"
    make_files(source, 7)
    monkeypatch.chdir(source)
    container = f"{registry}/{repo}"
    oras_client.push(target=f"{container}:one", files=["README.md"], quiet=True)
    oras_client.push(target=f"{container}:two", files=["model.bin"], quiet=True)
    assert sorted(oras_client.get_tags(container)) == ["one", "two"]

    assert oras_client.delete_tag(container, "one")
    with pytest.raises(Exception, match=r"(?i)manifest unknown|not found|404"):
        oras_client.get_manifest(f"{container}:one")
    assert oras_client.get_tags(container) == ["two"]
    assert oras_client.get_manifest(f"{container}:two")["layers"][0]["size"] == 700 * 1024 + 17


def test_artifact_with_subject_is_a_referrer(
    oras_client: Any,
    registry_server: RunningRegistry,
    skopeo: Skopeo,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An artifact pushed with a subject is listed by GET /v2/<name>/referrers/<digest>."""
    if registry_server.kind == "reference":
        pytest.skip("the reference registry (distribution 2.8) has no referrers API")
    import oras.oci  # type: ignore[import-untyped]

    registry = registry_server.address
    image = image_maker.image(layer_count=1)
    layout = tmp_path / "layout"
    write_layout(layout, {"v1": image})
    skopeo.copy(f"oci:{layout}:v1", f"docker://{registry}/{repo}:v1", "--preserve-digests")

    source = tmp_path / "source"
    make_files(source, 11)
    monkeypatch.chdir(source)
    (source / "sbom.json").write_text('{"sbom": true}')
    subject = oras.oci.Subject(OCI_MANIFEST, image.digest, len(image.manifest.data))
    response = oras_client.push(
        target=f"{registry}/{repo}:sbom",
        files=["README.md"],
        manifest_config=f"sbom.json:{ARTIFACT_CONFIG}",
        subject=subject,
        quiet=True,
    )
    assert response.status_code == 201
    assert response.headers.get("OCI-Subject") == image.digest
    artifact_digest = response.headers["Docker-Content-Digest"]

    def referrers(query: str = "") -> dict[str, Any]:
        url = f"http://{registry}/v2/{repo}/referrers/{image.digest}{query}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.headers["Content-Type"].startswith(OCI_INDEX)
            return dict(json.loads(answer.read()))

    listed = referrers()
    assert [entry["digest"] for entry in listed["manifests"]] == [artifact_digest]
    assert listed["manifests"][0]["artifactType"] == ARTIFACT_CONFIG
    # Clients encode the query as a form does: "+" in a media type travels as %2B.
    query = urllib.parse.urlencode({"artifactType": ARTIFACT_CONFIG})
    assert referrers(f"?{query}")["manifests"][0]["digest"] == artifact_digest
    assert referrers("?artifactType=application/x-nothing")["manifests"] == []
