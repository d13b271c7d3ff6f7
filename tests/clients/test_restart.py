"""What a client pushed is still there, byte for byte, after the registry restarts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .engines import Skopeo
from .images import ImageMaker, assert_layout_holds, write_layout
from .registries import RegistryStarter

pytestmark = pytest.mark.clients


@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_pushed_images_survive_restart(
    skopeo: Skopeo,
    start_registry_on: RegistryStarter,
    registry_data: Path,
    image_maker: ImageMaker,
    tmp_path: Path,
    stop: str,
) -> None:
    image = image_maker.image(layer_count=2)
    index = image_maker.index(("amd64", "arm64"))
    layout = tmp_path / "layout"
    write_layout(layout, {"image": image, "index": index})

    with start_registry_on(registry_data) as first:
        base = f"docker://{first.address}/restart/{stop}"
        skopeo.copy(f"oci:{layout}:image", f"{base}:image", "--preserve-digests")
        skopeo.copy(f"oci:{layout}:index", f"{base}:index", "--preserve-digests", "--all")
        # A push acknowledged is a push kept: no clean shutdown is owed to the client.
        for process in reversed(first.processes):
            if stop == "sigkill":
                process.kill()
            else:
                process.stop()

    with start_registry_on(registry_data) as second:
        base = f"docker://{second.address}/restart/{stop}"
        tags = json.loads(skopeo("list-tags", "--tls-verify=false", base).stdout)["Tags"]
        assert sorted(tags) == ["image", "index"]
        assert skopeo.raw_manifest(f"{base}:image") == image.manifest.data
        out = tmp_path / "out"
        skopeo.copy(f"{base}:image", f"oci:{out}:image", "--preserve-digests")
        skopeo.copy(f"{base}:index", f"oci:{out}:index", "--preserve-digests", "--all")
        assert_layout_holds(out, "image", image)
        assert_layout_holds(out, "index", index)
