"""The generated gRPC modules in shoal/v1 are exactly what proto/generate.py makes from
proto/: regenerate into a temporary folder and compare file by file."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "shoal" / "v1"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("shoal_proto_generate",
                                                  ROOT / "proto" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


@pytest.fixture(scope="module")
def regenerated() -> Iterator[Path]:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (a dev dependency) is needed")
    out = Path(tempfile.mkdtemp(prefix="shoal-proto-"))
    try:
        _load_generator().generate(out)
        yield out / "shoal" / "v1"
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_generated_modules_are_up_to_date(regenerated: Path) -> None:
    fresh, committed = _files(regenerated), _files(COMMITTED)
    assert fresh, "the generator produced nothing"
    assert sorted(fresh) == sorted(committed), "files missing or extra in shoal/v1"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, (f"shoal/v1 is stale for {stale}: run `python proto/generate.py` "
                       "and commit the result")


def test_every_proto_has_its_modules(regenerated: Path) -> None:
    protos = sorted(p.stem for p in (ROOT / "proto" / "shoal" / "v1").glob("*.proto"))
    assert protos
    for stem in protos:
        for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi"):
            assert (regenerated / f"{stem}{suffix}").is_file()
