"""imagesim: image similarity search as gRPC services.

The Python API a user needs is importable from here::

    from imagesim import Collection, EmbedderClient, SearchParams, index_paths, list_images

Every name of `__all__` is imported on first use (module `__getattr__`), so `import imagesim`
stays cheap: the servers import this package too, and the client install has no TensorFlow or
Annoy. Packages: `imagesim.v1` (generated stubs), `imagesim.serving` (what both servers share),
`imagesim.embedder_server`, `imagesim.index_server`, `imagesim.client`, `imagesim.web`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imagesim.bulk.common import BulkReport
    from imagesim.channel import ChannelSecurity
    from imagesim.client.bulk import index_paths
    from imagesim.client.collection import Collection, SearchResult
    from imagesim.client.embedder_client import EmbedderClient
    from imagesim.client.index_client import IndexClient
    from imagesim.enums import Metric, Space
    from imagesim.errors import (
        Aborted,
        Cancelled,
        DeadlineExceeded,
        FailedPrecondition,
        ImagesimError,
        Internal,
        InvalidArgument,
        NotFound,
        PermissionDenied,
        Reason,
        ResourceExhausted,
        Unauthenticated,
        Unavailable,
    )
    from imagesim.images import list_images
    from imagesim.params import SearchParams
    from imagesim.types import (
        AddResult,
        BuildResult,
        EmbedderInfo,
        Item,
        ItemToAdd,
        Layout,
        Neighbor,
        RemoveResult,
        ShardStats,
    )

# name -> the module defining it (imported when the name is first used)
_EXPORTS: dict[str, str] = {
    # clients: the collection (every shard), the embedder, one shard
    "Collection": "imagesim.client.collection",
    "SearchResult": "imagesim.client.collection",
    "EmbedderClient": "imagesim.client.embedder_client",
    "IndexClient": "imagesim.client.index_client",
    "Neighbor": "imagesim.types",
    "Item": "imagesim.types",
    "ItemToAdd": "imagesim.types",
    # what the calls answer
    "ShardStats": "imagesim.types",
    "EmbedderInfo": "imagesim.types",
    "BuildResult": "imagesim.types",
    "AddResult": "imagesim.types",
    "RemoveResult": "imagesim.types",
    "Layout": "imagesim.types",
    "SearchParams": "imagesim.params",
    "ChannelSecurity": "imagesim.channel",
    "Space": "imagesim.enums",
    "Metric": "imagesim.enums",
    # bulk work over a folder
    "index_paths": "imagesim.client.bulk",
    "list_images": "imagesim.images",
    "BulkReport": "imagesim.bulk.common",
    # errors: every failed call raises an ImagesimError subclass carrying a Reason
    "ImagesimError": "imagesim.errors",
    "Reason": "imagesim.errors",
    "InvalidArgument": "imagesim.errors",
    "NotFound": "imagesim.errors",
    "FailedPrecondition": "imagesim.errors",
    "Aborted": "imagesim.errors",
    "ResourceExhausted": "imagesim.errors",
    "Unavailable": "imagesim.errors",
    "DeadlineExceeded": "imagesim.errors",
    "Internal": "imagesim.errors",
    "Cancelled": "imagesim.errors",
    "Unauthenticated": "imagesim.errors",
    "PermissionDenied": "imagesim.errors",
}

__all__ = [
    "Aborted",
    "AddResult",
    "BuildResult",
    "BulkReport",
    "Cancelled",
    "ChannelSecurity",
    "Collection",
    "DeadlineExceeded",
    "EmbedderClient",
    "EmbedderInfo",
    "FailedPrecondition",
    "ImagesimError",
    "IndexClient",
    "Internal",
    "InvalidArgument",
    "Item",
    "ItemToAdd",
    "Layout",
    "Metric",
    "Neighbor",
    "NotFound",
    "PermissionDenied",
    "Reason",
    "RemoveResult",
    "ResourceExhausted",
    "SearchParams",
    "SearchResult",
    "ShardStats",
    "Space",
    "Unauthenticated",
    "Unavailable",
    "index_paths",
    "list_images",
]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # the installed distribution's, read when first asked for
        from imagesim.version import package_version

        return package_version()
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imagesim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
