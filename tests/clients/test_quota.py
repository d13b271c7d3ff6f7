"""skopeo against a `shoal serve --quota`: a copy that fits goes through, one that would
take the repository past its quota fails with the registry's reason."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .engines import Skopeo
from .images import ImageMaker, write_layout
from .procs import Process, free_port, http_status, scratch_dir

pytestmark = pytest.mark.clients


def test_skopeo_copy_over_quota_is_refused(skopeo: Skopeo, image_maker: ImageMaker,
                                            tmp_path: Path) -> None:
    small = image_maker.image(layer_count=1, random_size=16 * 1024, text_size=16 * 1024)
    big = image_maker.image(layer_count=3, random_size=512 * 1024, text_size=1024)
    assert sum(len(b.data) for b in small.blobs()) < 512 * 1024
    assert sum(len(b.data) for b in big.blobs()) > 1024 * 1024
    layout = tmp_path / "layout"
    write_layout(layout, {"small": small, "big": big})
    with scratch_dir("quota") as root:
        quota = root / "quota.toml"
        quota.write_text('[[quota]]\nrepositories = ["team/*"]\nmax = "1 MiB"\n')
        address = f"127.0.0.1:{free_port()}"
        process = Process("shoal serve", [sys.executable, "-m", "shoal", "serve", "--data",
                                          str(root / "data"), "--listen", address,
                                          "--quota", str(quota)], root / "shoal.log")
        try:
            process.wait_until(lambda: http_status(f"http://{address}/v2/") == 200, 60,
                               "the registry answers")
            skopeo.copy(f"oci:{layout}:small", f"docker://{address}/team/app:small")
            refused = skopeo("copy", "--quiet", "--dest-tls-verify=false", f"oci:{layout}:big",
                             f"docker://{address}/team/app:big", check=False)
            assert refused.returncode != 0
            assert "over its quota of 1.0 MiB" in refused.stderr, refused.stderr
            assert http_status(f"http://{address}/v2/team/app/manifests/big") == 404
            assert http_status(f"http://{address}/v2/team/app/manifests/small") == 200
            skopeo.copy(f"oci:{layout}:big", f"docker://{address}/other/app:big")
        finally:
            process.stop()
