"""Generate the Python gRPC stubs (and typed .pyi) from protos/ into imagesim/v1/.

The one entry point for code generation: `make protos` and the package build both call it.
Protos are compiled with `-I protos`, so `protos/imagesim/v1/x.proto` becomes the module
`imagesim.v1.x_pb2` and generated modules import each other absolutely.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Compile every .proto under protos/ into `out_dir`; returns the proto files compiled."""
    from grpc_tools import protoc  # build-time dependency only

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    include = Path(protoc.__file__).parent / "_proto"  # well-known types
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed: see the messages above")
    for package_dir in {(out_dir / p.relative_to(PROTO_ROOT)).parent for p in protos}:
        (package_dir / "__init__.py").touch()
    return protos


if __name__ == "__main__":
    compiled = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print(f"generated stubs for {len(compiled)} proto files")
