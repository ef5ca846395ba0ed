"""imagesim: image similarity search as gRPC services.

Packages: `imagesim.v1` (generated stubs), `imagesim.serving` (what both servers share),
`imagesim.embedder_server`, `imagesim.index_server`, `imagesim.client`.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """`imagesim.__version__`: the installed distribution's, read when first asked for."""
    if name == "__version__":
        from imagesim.version import package_version

        return package_version()
    raise AttributeError(f"module 'imagesim' has no attribute {name!r}")
