"""podman pushes and pulls through the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .engines import Podman, Skopeo
from .images import OCI_MANIFEST, ImageMaker, write_layout

pytestmark = pytest.mark.clients


def build_image(podman: Podman, maker: ImageMaker, context: Path, tag: str) -> None:
    lines = ["FROM scratch"]
    for index in range(2):
        for name, data in maker.layer_files(index, 160 * 1024, 200 * 1024).items():
            path = context / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        lines.append(f"COPY layer{index}/ /layer{index}/")
    lines.append(f'LABEL dev.shoal.test="{maker.seed}"')
    (context / "Containerfile").write_text("\n".join(lines) + "\n")
    podman("build", "--quiet", "--network", "none", "--tag", tag, str(context))


def image_id(podman: Podman, ref: str) -> str:
    return podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


@pytest.mark.parametrize("manifest_format", ["oci", "v2s2"])
def test_push_then_pull(
    podman: Podman,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
    manifest_format: str,
) -> None:
    ref = f"{registry}/{repo}:v1"
    build_image(podman, image_maker, tmp_path, ref)
    built_id = image_id(podman, ref)
    digest_file = tmp_path / "digest"
    podman(
        "push", "--tls-verify=false", "--format", manifest_format,
        "--digestfile", str(digest_file), ref,
    )  # fmt: skip
    digest = digest_file.read_text().strip()

    raw = skopeo.raw_manifest(f"docker://{ref}")
    manifest = json.loads(raw)
    assert manifest["config"]["digest"] == f"sha256:{built_id}"
    assert skopeo.inspect(f"docker://{ref}")["Digest"] == digest

    podman("rmi", ref)
    podman("pull", "--quiet", "--tls-verify=false", ref)
    assert image_id(podman, ref) == built_id

    podman("rmi", ref)
    by_digest = f"{registry}/{repo}@{digest}"
    podman("pull", "--quiet", "--tls-verify=false", by_digest)
    assert image_id(podman, by_digest) == built_id
    podman("rmi", by_digest)


def test_pull_image_pushed_by_skopeo(
    podman: Podman,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    image = image_maker.image(layer_count=2, random_size=96 * 1024, text_size=96 * 1024)
    layout = tmp_path / "layout"
    write_layout(layout, {"v1": image})
    ref = f"{registry}/{repo}:v1"
    skopeo.copy(f"oci:{layout}:v1", f"docker://{ref}", "--preserve-digests")

    podman("pull", "--quiet", "--tls-verify=false", ref)
    try:
        assert f"sha256:{image_id(podman, ref)}" == image.config.digest
        digest = podman("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()
        assert digest == image.digest
        # Pushing it on unchanged keeps the manifest byte for byte.
        copy = f"{registry}/{repo}-again:v1"
        podman("tag", ref, copy)
        podman("push", "--quiet", "--tls-verify=false", copy)
        raw = skopeo.raw_manifest(f"docker://{copy}")
        assert json.loads(raw)["mediaType"] == OCI_MANIFEST
        assert [layer["digest"] for layer in json.loads(raw)["layers"]] == [
            layer.blob.digest for layer in image.layers
        ]
        podman("rmi", copy)
    finally:
        podman("rmi", ref)


def test_manifest_list_push(
    podman: Podman,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    """podman assembles a manifest list from two pushed images and pushes it with --all."""
    index = image_maker.index(("amd64", "arm64"))
    layout = tmp_path / "layout"
    write_layout(layout, {image.architecture: image for image in index.images})
    for image in index.images:
        ref = f"docker://{registry}/{repo}:{image.architecture}"
        skopeo.copy(f"oci:{layout}:{image.architecture}", ref, "--preserve-digests")

    listname = f"localhost/{repo}-list:latest"
    podman("manifest", "create", listname)
    try:
        for image in index.images:
            podman(
                "manifest", "add", "--tls-verify=false", listname,
                f"docker://{registry}/{repo}:{image.architecture}",
            )  # fmt: skip
        target = f"{registry}/{repo}:multi"
        podman("manifest", "push", "--all", "--tls-verify=false", listname, f"docker://{target}")
    finally:
        podman("manifest", "rm", listname, check=False)

    pushed = json.loads(skopeo.raw_manifest(f"docker://{target}"))
    children = {entry["platform"]["architecture"]: entry for entry in pushed["manifests"]}
    assert set(children) == {"amd64", "arm64"}
    for image in index.images:
        child = children[image.architecture]
        assert child["digest"] == image.digest
        raw = skopeo.raw_manifest(f"docker://{registry}/{repo}@{child['digest']}")
        assert raw == image.manifest.data
    arm = skopeo.inspect(f"docker://{target}", "--override-arch", "arm64")
    assert arm["Layers"] == [layer.blob.digest for layer in index.images[1].layers]
