"""docker pushes and pulls through the registry, by tag and by digest."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import pytest

from .engines import Docker, Skopeo
from .images import ImageMaker, write_layout
from .procs import run_bytes

pytestmark = pytest.mark.clients

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def build_image(docker: Docker, maker: ImageMaker, context: Path, tag: str) -> dict[str, bytes]:
    """`docker build` a FROM scratch image of three COPY layers; return the files it holds."""
    files: dict[str, bytes] = {}
    lines = ["FROM scratch"]
    for index in range(3):
        layer_files = maker.layer_files(index, random_size=200 * 1024, text_size=300 * 1024)
        for name, data in layer_files.items():
            path = context / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        files.update(layer_files)
        lines.append(f"COPY layer{index}/ /layer{index}/")
    lines.append(f'LABEL dev.shoal.test="{maker.seed}"')
    lines.append('CMD ["/layer0/etc/seed"]')
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    docker("build", "--quiet", "--tag", tag, str(context))
    return files


def image_id(docker: Docker, ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()


def read_file_from_image(docker: Docker, ref: str, path: str) -> bytes:
    """A file's bytes from the image's root filesystem, through `docker cp` of a container."""
    container = docker("create", ref).stdout.strip()
    try:
        # `docker cp CONTAINER:PATH -` writes a tar holding the one file.
        raw = run_bytes([docker.cli, "cp", f"{container}:{path}", "-"], env=docker.env).stdout
    finally:
        docker("rm", "--force", container)
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        member = tar.next()
        assert member is not None and member.isfile(), f"{path} is not a file in {ref}"
        handle = tar.extractfile(member)
        assert handle is not None
        return handle.read()


def test_push_then_pull_by_tag_and_digest(
    dockerd: Docker,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
    skopeo: Skopeo,
) -> None:
    ref = f"{registry}/{repo}:v1"
    files = build_image(dockerd, image_maker, tmp_path, ref)
    built_id = image_id(dockerd, ref)

    pushed = dockerd("push", ref).stdout
    match = re.search(r"digest: (sha256:[0-9a-f]{64}) size: (\d+)", pushed)
    assert match, pushed
    digest = match.group(1)

    # The registry holds a Docker schema 2 manifest whose config is the image id.
    raw = skopeo.raw_manifest(f"docker://{ref}")
    manifest = json.loads(raw)
    assert manifest["mediaType"] == DOCKER_MANIFEST
    assert manifest["config"]["digest"] == built_id
    assert len(manifest["layers"]) == 3
    assert int(match.group(2)) == len(raw)

    dockerd("rmi", ref)
    assert dockerd("image", "inspect", ref, check=False).returncode != 0

    dockerd("pull", ref)
    assert image_id(dockerd, ref) == built_id
    repo_digests = json.loads(
        dockerd("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
    )
    assert f"{registry}/{repo}@{digest}" in repo_digests

    dockerd("rmi", ref)
    by_digest = f"{registry}/{repo}@{digest}"
    dockerd("pull", by_digest)
    assert image_id(dockerd, by_digest) == built_id
    for name in ("layer0/random.bin", "layer2/words.txt"):
        assert read_file_from_image(dockerd, by_digest, f"/{name}") == files[name]
    dockerd("rmi", by_digest)


def test_pull_oci_image_pushed_by_skopeo(
    dockerd: Docker,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    """docker pulls an OCI manifest (made here, pushed by skopeo) to the same image id."""
    image = image_maker.image(layer_count=3, random_size=128 * 1024, text_size=128 * 1024)
    layout = tmp_path / "layout"
    write_layout(layout, {"v1": image})
    ref = f"{registry}/{repo}:oci"
    skopeo.copy(f"oci:{layout}:v1", f"docker://{ref}", "--preserve-digests")

    dockerd("pull", ref)
    try:
        assert image_id(dockerd, ref) == image.config.digest
        files = image.files()
        assert (
            read_file_from_image(dockerd, ref, "/layer1/random.bin") == files["layer1/random.bin"]
        )
    finally:
        dockerd("rmi", ref)


def test_push_second_tag_reuses_blobs(
    dockerd: Docker,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    """Pushing the same image again, and under a new repository, finds its blobs present."""
    ref = f"{registry}/{repo}:v1"
    build_image(dockerd, image_maker, tmp_path, ref)
    dockerd("push", ref)

    again = dockerd("push", ref).stdout
    assert "Layer already exists" in again, again

    other = f"{registry}/{repo}-copy:v1"
    dockerd("tag", ref, other)
    mounted = dockerd("push", other).stdout
    assert re.search(r"Mounted from|Layer already exists", mounted), mounted
    dockerd("rmi", ref, other)


def test_pull_multi_arch_index(
    dockerd: Docker,
    skopeo: Skopeo,
    registry: str,
    repo: str,
    image_maker: ImageMaker,
    tmp_path: Path,
) -> None:
    """docker resolves an OCI index to the amd64 manifest and pulls that image."""
    index = image_maker.index(("arm64", "amd64"))
    layout = tmp_path / "layout"
    write_layout(layout, {"multi": index})
    ref = f"{registry}/{repo}:multi"
    skopeo.copy(f"oci:{layout}:multi", f"docker://{ref}", "--all", "--preserve-digests")

    dockerd("pull", ref)
    try:
        amd64 = index.images[1]
        assert image_id(dockerd, ref) == amd64.config.digest
        repo_digests = json.loads(
            dockerd("image", "inspect", "--format", "{{json .RepoDigests}}", ref).stdout
        )
        assert repo_digests == [f"{registry}/{repo}@{index.digest}"]
    finally:
        dockerd("rmi", ref)
