"""containerd (`ctr`) pulls images that skopeo pushed, and pushes them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from .engines import Containerd, Skopeo
from .images import Image, ImageIndex, ImageMaker, write_layout
from .procs import run_bytes

pytestmark = pytest.mark.clients


def push(skopeo: Skopeo, tmp_path: Path, item: Image | ImageIndex, ref: str) -> None:
    layout = tmp_path / "layout"
    write_layout(layout, {"src": item})
    skopeo.copy(f"oci:{layout}:src", f"docker://{ref}", "--preserve-digests", "--all")


def content(containerd: Containerd, digest: str) -> bytes:
    argv = [containerd.ctr_binary, "--address", str(containerd.socket),
            "--namespace", containerd.namespace, "content", "get", digest]  # fmt: skip
    return run_bytes(argv).stdout


def image_digest(containerd: Containerd, ref: str) -> str:
    listing = containerd.ctr("images", "ls", f"name=={ref}").stdout.splitlines()
    assert len(listing) == 2, listing
    header, row = listing[0].split(), listing[1].split()
    return row[header.index("DIGEST")]


def test_pull_image_pushed_by_skopeo(
    containerd: Containerd,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    image = image_maker.image(layer_count=3, random_size=128 * 1024, text_size=256 * 1024)
    ref = f"{registry}/{repo}:v1"
    push(skopeo, tmp_path, image, ref)

    containerd.ctr("images", "pull", "--plain-http", "--snapshotter", "native", ref)
    try:
        assert image_digest(containerd, ref) == image.digest
        for blob in [image.manifest, *image.blobs()]:
            assert content(containerd, blob.digest) == blob.data, blob.digest
        check = containerd.ctr("images", "check", f"name=={ref}").stdout
        assert "complete" in check, check
    finally:
        containerd.ctr("images", "rm", "--sync", ref)


def test_pull_by_digest(
    containerd: Containerd,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    image = image_maker.image(layer_count=1)
    push(skopeo, tmp_path, image, f"{registry}/{repo}:v1")
    ref = f"{registry}/{repo}@{image.digest}"
    containerd.ctr("images", "pull", "--plain-http", "--snapshotter", "native", ref)
    try:
        assert image_digest(containerd, ref) == image.digest
    finally:
        containerd.ctr("images", "rm", "--sync", ref)


def test_pull_multi_arch_index_then_push(
    containerd: Containerd,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    index = image_maker.index(("amd64", "arm64"))
    ref = f"{registry}/{repo}:multi"
    push(skopeo, tmp_path, index, ref)

    containerd.ctr("images", "pull", "--plain-http", "--all-platforms", ref)
    try:
        assert image_digest(containerd, ref) == index.digest
        for blob in [index.manifest, *index.blobs()]:
            assert content(containerd, blob.digest) == blob.data, blob.digest

        # containerd's pusher: HEAD each blob, upload what is missing, then the manifests.
        pushed = f"{registry}/{repo}/pushed:multi"
        containerd.ctr("images", "tag", ref, pushed)
        containerd.ctr("images", "push", "--plain-http", pushed)
        assert skopeo.raw_manifest(f"docker://{pushed}") == index.manifest.data
        for image in index.images:
            child = f"docker://{registry}/{repo}/pushed@{image.digest}"
            assert skopeo.raw_manifest(child) == image.manifest.data
        containerd.ctr("images", "rm", "--sync", pushed)
    finally:
        containerd.ctr("images", "rm", "--sync", ref)
