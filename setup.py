"""Build hook: generate the gRPC stubs from protos/ into the build (they are never committed)."""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from gen_protos import generate


class BuildPyWithProtos(build_py):
    def run(self) -> None:
        generate()  # into the source tree: editable installs see it, wheels copy it below
        super().run()


setup(cmdclass={"build_py": BuildPyWithProtos})
