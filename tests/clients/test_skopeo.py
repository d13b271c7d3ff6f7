"""skopeo copies images in and out of the registry byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .engines import Skopeo
from .images import (
    Image,
    ImageIndex,
    ImageMaker,
    assert_layout_holds,
    sha256_digest,
    write_layout,
)
from .procs import http_status
from .registries import RunningRegistry

pytestmark = pytest.mark.clients

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def push_layout(
    skopeo: Skopeo, tmp_path: Path, item: Image | ImageIndex, dest: str, *extra: str
) -> None:
    layout = tmp_path / "push-layout"
    write_layout(layout, {"src": item})
    skopeo.copy(f"oci:{layout}:src", dest, "--preserve-digests", *extra)


def test_copy_in_and_out_byte_for_byte(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    image = image_maker.image(layer_count=3)
    ref = f"docker://{registry}/{repo}:v1"
    push_layout(skopeo, tmp_path, image, ref)

    assert skopeo.raw_manifest(ref) == image.manifest.data
    assert skopeo.raw_manifest(f"docker://{registry}/{repo}@{image.digest}") == image.manifest.data

    out = tmp_path / "out"
    skopeo.copy(ref, f"oci:{out}:v1", "--preserve-digests")
    assert_layout_holds(out, "v1", image)

    # The dir: transport keeps each blob in a file named by its digest, unchanged.
    out_dir = tmp_path / "dir"
    skopeo.copy(ref, f"dir:{out_dir}")
    assert (out_dir / "manifest.json").read_bytes() == image.manifest.data
    for blob in image.blobs():
        assert (out_dir / blob.digest.removeprefix("sha256:")).read_bytes() == blob.data


def test_inspect(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    image = image_maker.image(layer_count=2)
    ref = f"docker://{registry}/{repo}:inspected"
    push_layout(skopeo, tmp_path, image, ref)

    info = skopeo.inspect(ref)
    assert info["Digest"] == image.digest
    assert info["Layers"] == [layer.blob.digest for layer in image.layers]
    assert info["Architecture"] == "amd64"
    assert info["Os"] == "linux"
    assert info["Labels"] == {"dev.shoal.test": str(image_maker.seed)}
    assert "inspected" in info["RepoTags"]  # type: ignore[operator]

    config = skopeo("inspect", "--tls-verify=false", "--config", "--raw", ref).stdout
    assert config.encode() == image.config.data


def test_list_tags(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    first, second = image_maker.image(layer_count=1), image_maker.image(layer_count=1)
    layout = tmp_path / "layout"
    tags = {"v1": first, "v1.1": first, "latest": second, "2024-01-01": second}
    write_layout(layout, dict(tags))
    for tag in tags:
        skopeo.copy(f"oci:{layout}:{tag}", f"docker://{registry}/{repo}:{tag}")

    listed = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{registry}/{repo}").stdout
    )
    assert listed["Repository"] == f"{registry}/{repo}"
    assert sorted(listed["Tags"]) == sorted(tags)
    for tag, image in tags.items():
        assert skopeo.inspect(f"docker://{registry}/{repo}:{tag}")["Digest"] == image.digest


def test_delete(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    keep, doomed = image_maker.image(layer_count=1), image_maker.image(layer_count=1)
    push_layout(skopeo, tmp_path / "keep", keep, f"docker://{registry}/{repo}:keep")
    push_layout(skopeo, tmp_path / "doomed", doomed, f"docker://{registry}/{repo}:doomed")

    skopeo("delete", "--tls-verify=false", f"docker://{registry}/{repo}:doomed")

    gone = skopeo(
        "inspect", "--tls-verify=false", f"docker://{registry}/{repo}:doomed", check=False
    )
    assert gone.returncode != 0
    assert "manifest unknown" in gone.stderr.lower(), gone.stderr
    by_digest = skopeo(
        "inspect",
        "--tls-verify=false",
        "--raw",
        f"docker://{registry}/{repo}@{doomed.digest}",
        check=False,
    )
    assert by_digest.returncode != 0
    assert "manifest unknown" in by_digest.stderr.lower(), by_digest.stderr

    assert skopeo.raw_manifest(f"docker://{registry}/{repo}:keep") == keep.manifest.data
    listed = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{registry}/{repo}").stdout
    )
    assert listed["Tags"] == ["keep"]

    # Pushed again after the delete, the same image comes back whole.
    push_layout(skopeo, tmp_path / "again", doomed, f"docker://{registry}/{repo}:doomed")
    out = tmp_path / "out"
    skopeo.copy(f"docker://{registry}/{repo}:doomed", f"oci:{out}:doomed", "--preserve-digests")
    assert_layout_holds(out, "doomed", doomed)


def test_multi_arch_index(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    index = image_maker.index(("amd64", "arm64"))
    ref = f"docker://{registry}/{repo}:multi"
    push_layout(skopeo, tmp_path, index, ref, "--all")

    assert skopeo.raw_manifest(ref) == index.manifest.data
    for image in index.images:
        child = f"docker://{registry}/{repo}@{image.digest}"
        assert skopeo.raw_manifest(child) == image.manifest.data

    # Resolving the index for one platform picks that platform's manifest.
    arm = skopeo.inspect(ref, "--override-arch", "arm64")
    assert arm["Digest"] == index.digest
    assert arm["Architecture"] == "arm64"
    assert arm["Layers"] == [layer.blob.digest for layer in index.images[1].layers]

    out = tmp_path / "out"
    skopeo.copy(ref, f"oci:{out}:multi", "--all", "--preserve-digests")
    assert_layout_holds(out, "multi", index)


def test_copy_between_repositories(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    """A copy inside one registry mounts blobs across repositories (POST ?mount=&from=)."""
    image = image_maker.image(layer_count=2)
    source = f"docker://{registry}/{repo}/source:v1"
    push_layout(skopeo, tmp_path, image, source)

    target = f"docker://{registry}/{repo}/target:v1"
    skopeo.copy(source, target, "--preserve-digests")
    assert skopeo.raw_manifest(target) == image.manifest.data

    out = tmp_path / "out"
    skopeo.copy(target, f"oci:{out}:v1", "--preserve-digests")
    assert_layout_holds(out, "v1", image)


def test_docker_schema2_conversion(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    """skopeo --format v2s2 stores a Docker manifest, served back with its own media type."""
    image = image_maker.image(layer_count=2)
    ref = f"docker://{registry}/{repo}:v2s2"
    layout = tmp_path / "layout"
    write_layout(layout, {"src": image})
    skopeo.copy(f"oci:{layout}:src", ref, "--format", "v2s2")

    raw = skopeo.raw_manifest(ref)
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert skopeo.inspect(ref)["Digest"] == sha256_digest(raw)
    assert [layer["digest"] for layer in manifest["layers"]] == [
        layer.blob.digest for layer in image.layers
    ]

    out_dir = tmp_path / "dir"
    skopeo.copy(ref, f"dir:{out_dir}")
    assert (out_dir / "manifest.json").read_bytes() == raw
    for layer in image.layers:
        digest = layer.blob.digest.removeprefix("sha256:")
        assert (out_dir / digest).read_bytes() == layer.blob.data


def test_concurrent_pushes_sharing_layers(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    """Several skopeo processes push images that share layers, into one repository and two."""
    shared = [image_maker.layer(image_maker.layer_files(i, 192 * 1024, 128 * 1024))
              for i in range(2)]  # fmt: skip
    images = []
    for number in range(4):
        own = image_maker.layer(image_maker.layer_files(10 + number, 64 * 1024, 64 * 1024))
        images.append(image_maker.image(layers=[*shared, own]))
    layout = tmp_path / "layout"
    write_layout(layout, {f"img{n}": image for n, image in enumerate(images)})
    refs = [f"docker://{registry}/{repo}/{'a' if n % 2 else 'b'}:img{n}" for n in range(4)]

    with ThreadPoolExecutor(max_workers=len(refs)) as pool:
        pushes = [
            pool.submit(skopeo.copy, f"oci:{layout}:img{n}", ref, "--preserve-digests")
            for n, ref in enumerate(refs)
        ]
        for push in pushes:
            push.result()

    out = tmp_path / "out"
    with ThreadPoolExecutor(max_workers=len(refs)) as pool:
        pulls = [
            pool.submit(skopeo.copy, ref, f"oci:{out}-{n}:img{n}", "--preserve-digests")
            for n, ref in enumerate(refs)
        ]
        for pull in pulls:
            pull.result()
    for n, image in enumerate(images):
        assert_layout_holds(Path(f"{out}-{n}"), f"img{n}", image)


def test_large_layer(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    """A layer of tens of MiB streams in and out whole (several chunks, several reads)."""
    big = image_maker.layer({"big/random.bin": image_maker.random_bytes(24 * 1024 * 1024 + 3)})
    image = image_maker.image(layers=[big])
    ref = f"docker://{registry}/{repo}:big"
    push_layout(skopeo, tmp_path, image, ref)
    out = tmp_path / "out"
    skopeo.copy(ref, f"oci:{out}:big", "--preserve-digests")
    assert_layout_holds(out, "big", image)


def test_zstd_layers(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    """Layers recompressed with zstd on the way in come back as the registry stored them."""
    image = image_maker.image(layer_count=2)
    layout = tmp_path / "layout"
    write_layout(layout, {"src": image})
    ref = f"docker://{registry}/{repo}:zstd"
    skopeo.copy(f"oci:{layout}:src", ref, "--dest-compress-format", "zstd", "--format", "oci")

    raw = skopeo.raw_manifest(ref)
    manifest = json.loads(raw)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"
    }
    out_dir = tmp_path / "dir"
    skopeo.copy(ref, f"dir:{out_dir}")
    assert (out_dir / "manifest.json").read_bytes() == raw
    for descriptor in manifest["layers"]:
        data = (out_dir / descriptor["digest"].removeprefix("sha256:")).read_bytes()
        assert sha256_digest(data) == descriptor["digest"]
        assert len(data) == descriptor["size"]
        assert data[:4] == b"\x28\xb5\x2f\xfd"  # the zstd frame magic


def test_interrupted_push_then_retry(
    skopeo: Skopeo,
    registry_server: RunningRegistry,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    """A push killed mid-layer leaves no broken blob behind, and a retry completes it."""
    registry = registry_server.address
    big = image_maker.layer({"big/random.bin": image_maker.random_bytes(48 * 1024 * 1024)})
    image = image_maker.image(layers=[big])
    layout = tmp_path / "layout"
    write_layout(layout, {"src": image})
    ref = f"docker://{registry}/{repo}:retried"
    argv = [skopeo.binary, "--policy", str(skopeo.config.policy), "copy", "--quiet",
            "--dest-tls-verify=false", f"oci:{layout}:src", ref]  # fmt: skip
    upload = subprocess.Popen(argv, env={**os.environ, **skopeo.config.env})
    try:
        # Kill the client just after the registry logged the start of an upload session
        # (or after a moment, for a registry whose log the tests cannot read).
        started = f"POST /v2/{repo}/blobs/uploads/"
        log = registry_server.process.log_path if registry_server.process else None
        deadline = time.monotonic() + (30 if log else 0.5)
        while time.monotonic() < deadline and upload.poll() is None:
            if log and started in log.read_text(errors="replace"):
                break
            time.sleep(0.01)
        time.sleep(0.1)
    finally:
        upload.kill()
        upload.wait()

    blob_url = f"http://{registry}/v2/{repo}/blobs/{big.blob.digest}"
    status = http_status(blob_url)
    if status == 200:  # the client finished before the kill: the blob must then be whole
        assert fetch(blob_url) == big.blob.data
    else:
        assert status == 404

    push_layout(skopeo, tmp_path / "retry", image, ref)
    out = tmp_path / "out"
    skopeo.copy(ref, f"oci:{out}:retried", "--preserve-digests")
    assert_layout_holds(out, "retried", image)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        return bytes(response.read())


def test_many_tags(
    skopeo: Skopeo, registry: str, repo: str, image_maker: ImageMaker, tmp_path: Path
) -> None:
    """skopeo list-tags gets every tag of a repository holding more than one page of them."""
    image = image_maker.image(layer_count=1, random_size=1024, text_size=1024)
    push_layout(skopeo, tmp_path, image, f"docker://{registry}/{repo}:base")
    tags = {"base"} | {f"t{n:03d}" for n in range(150)}
    for tag in sorted(tags - {"base"}):
        request = urllib.request.Request(
            f"http://{registry}/v2/{repo}/manifests/{tag}",
            data=image.manifest.data,
            method="PUT",
            headers={"Content-Type": image.manifest.media_type},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 201
    listed = json.loads(
        skopeo("list-tags", "--tls-verify=false", f"docker://{registry}/{repo}").stdout
    )
    assert sorted(listed["Tags"]) == sorted(tags)
