"""imagesim: image similarity search as gRPC services.

Packages: `imagesim.v1` (generated stubs), `imagesim.serving` (what both servers share),
`imagesim.embedder_server`, `imagesim.index_server`, `imagesim.client`.
"""

__version__ = "0.1.0"
