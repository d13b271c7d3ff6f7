"""skopeo pulls through edges (`shoal edge`) as from any registry: an image pushed to the
origin (through one edge) is copied out of another edge's localhost gateway byte for byte,
its layers coming from the first edge and the origin."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .engines import Skopeo
from .images import ImageMaker, assert_layout_holds, write_layout
from .procs import Process, free_port, http_status, scratch_dir

pytestmark = pytest.mark.clients

START_TIMEOUT = 60.0


def _shoal(*args: str) -> list[str]:
    return [sys.executable, "-m", "shoal", *args]


@pytest.fixture
def edges() -> Iterator[list[str]]:
    """An origin node and two edges; the edges' HTTP addresses."""
    with scratch_dir("edge") as root:
        origin_port, metrics_port = free_port(), free_port()
        origin = Process("shoal node", _shoal(
            "node", "--data", str(root / "origin"), "--listen", f"127.0.0.1:{origin_port}",
            "--metrics-listen", f"127.0.0.1:{metrics_port}"), root / "origin.log")
        procs = [origin]
        try:
            origin.wait_until(
                lambda: http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200,
                START_TIMEOUT, "node metrics answer")
            addresses = []
            for name in ("edge-a", "edge-b"):
                address = f"127.0.0.1:{free_port()}"
                edge = Process(f"shoal edge {name}", _shoal(
                    "edge", "--data", str(root / name), "--listen", address,
                    "--peer-listen", f"127.0.0.1:{free_port()}",
                    "--origin", f"127.0.0.1:{origin_port}"), root / f"{name}.log")
                procs.append(edge)
                edge.wait_until(lambda a=address: http_status(f"http://{a}/v2/") == 200,
                                START_TIMEOUT, "GET /v2/ answers 200")
                addresses.append(address)
            yield addresses
        finally:
            for proc in reversed(procs):
                proc.stop()


def test_skopeo_copies_an_image_out_of_an_edge(skopeo: Skopeo, edges: list[str],
                                               image_maker: ImageMaker, tmp_path: Path) -> None:
    image = image_maker.image(layer_count=3, random_size=2 << 20)
    layout = tmp_path / "in"
    write_layout(layout, {"src": image})
    first, second = edges
    skopeo.copy(f"oci:{layout}:src", f"docker://{first}/p2p/app:v1", "--preserve-digests")
    skopeo.copy(f"docker://{first}/p2p/app:v1", f"oci:{tmp_path / 'a'}:v1",
                "--preserve-digests")
    skopeo.copy(f"docker://{second}/p2p/app:v1", f"oci:{tmp_path / 'b'}:v1",
                "--preserve-digests")
    assert_layout_holds(tmp_path / "a", "v1", image)
    assert_layout_holds(tmp_path / "b", "v1", image)
