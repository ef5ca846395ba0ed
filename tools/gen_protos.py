"""Generate the Python gRPC stubs and their typed stubs (.pyi) from protos/ into imagesim/v1/.

The one entry point for code generation: `make protos` and the package build both call it.
Protos are compiled with `-I protos`, so `protos/imagesim/v1/x.proto` becomes the module
`imagesim.v1.x_pb2` and generated modules import each other absolutely. The googleapis protos
(google/rpc/status.proto) come from the googleapis-common-protos package, whose generated
modules are imported at run time; they are never generated here.

Typed stubs come from mypy-protobuf (`x_pb2.pyi` and `x_pb2_grpc.pyi`), run as protoc plugins.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"

_PLUGIN = """#!{python}
import sys
from mypy_protobuf.main import {entry}
sys.exit({entry}())
"""


def _plugin(folder: Path, name: str, entry: str) -> Path:
    """An executable protoc plugin running mypy-protobuf with this interpreter (works inside
    an isolated build environment, whose scripts may not be on PATH)."""
    path = folder / f"protoc-gen-{name}"
    path.write_text(_PLUGIN.format(python=sys.executable, entry=entry))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def googleapis_proto_root() -> Path:
    """Where googleapis-common-protos keeps google/rpc/*.proto."""
    import google.rpc.status_pb2  # build-time and run-time dependency

    return Path(google.rpc.status_pb2.__file__).resolve().parent.parent.parent


def generate(out_dir: Path = ROOT) -> list[Path]:
    """Compile every .proto under protos/ into `out_dir`; returns the proto files compiled."""
    from grpc_tools import protoc  # build-time dependency only

    protos = sorted(PROTO_ROOT.rglob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files under {PROTO_ROOT}")
    well_known = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as plugins:
        mypy = _plugin(Path(plugins), "mypy", "main")
        mypy_grpc = _plugin(Path(plugins), "mypy_grpc", "grpc")
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{googleapis_proto_root()}",
            f"-I{well_known}",
            f"--plugin=protoc-gen-mypy={mypy}",
            f"--plugin=protoc-gen-mypy_grpc={mypy_grpc}",
            f"--python_out={out_dir}",
            f"--mypy_out=quiet:{out_dir}",
            f"--grpc_python_out={out_dir}",
            f"--mypy_grpc_out=quiet:{out_dir}",
            *(str(p) for p in protos),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed: see the messages above")
    for package_dir in {(out_dir / p.relative_to(PROTO_ROOT)).parent for p in protos}:
        (package_dir / "__init__.py").touch()
        (package_dir / "py.typed").touch()
    return protos


if __name__ == "__main__":
    os.chdir(ROOT)
    compiled = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
    print(f"generated stubs for {len(compiled)} proto files")
