"""Generate the Python modules for the wire contract: `python proto/generate.py`.

The output lands in shoal/v1/ (importable as `shoal.v1`), together with .pyi stubs for
mypy. tests/test_proto.py regenerates into a temporary folder and fails when the
committed modules differ, so the contract and the code cannot drift apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent


def proto_files() -> list[Path]:
    return sorted((PROTO_ROOT / "shoal" / "v1").glob("*.proto"))


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc  # a dev dependency: only this script needs it

    out_dir.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent  # mypy-protobuf's plugins sit beside python
    args = [
        "protoc",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"-I{PROTO_ROOT}",
        f"-I{Path(protoc.__file__).parent / '_proto'}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    (out_dir / "shoal" / "v1" / "__init__.py").write_text(
        '"""Generated from proto/shoal/v1 by proto/generate.py; do not edit."""\n'
    )


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_ROOT)
