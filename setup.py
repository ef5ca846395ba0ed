"""Build hook: generate the gRPC stubs from protos/ before setuptools looks for packages.

The stubs (imagesim/v1/) are never committed; every build, editable or not, makes them.
"""

import sys
from pathlib import Path

from setuptools import setup

sys.path.insert(0, str(Path(__file__).parent / "tools"))
from gen_protos import generate

generate()
setup()
