"""The ASGI application: the pages, the JSON API (documented at /docs) and their limits.

create_app builds the objects the routes share (kept on `app.state`, handed to the routes by
imagesim.web.deps), the middleware, the error handlers (imagesim.web.errors: the one place
errors become HTTP statuses) and includes the routers of imagesim.web.routes. Routes are thin:
parse and bound the parameters, call the Backend (client library), the thumbnail cache or the
duplicate finder off the event loop, shape the JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import anyio
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.middleware.trustedhost import TrustedHostMiddleware

from imagesim.client.images_root import ImagesRoot
from imagesim.security import KeyFile
from imagesim.web.auth import ApiKeyAuth
from imagesim.web.backend import Backend, collection_signature
from imagesim.web.duplicate_jobs import DuplicateJobs
from imagesim.web.errors import install_error_handlers
from imagesim.web.headers import SecurityHeaders
from imagesim.web.metrics import HttpMetrics
from imagesim.web.openapi import customize_openapi
from imagesim.web.origin import SameOriginOnly
from imagesim.web.review import Outliers
from imagesim.web.routes import duplicates, items, login, outliers, pages, review, search, stats
from imagesim.web.routes.pages import STATIC
from imagesim.web.settings import WebSettings
from imagesim.web.thumbnails import ThumbnailCache
from imagesim.web.uploads import UploadGuard

# In this order: the routes' order decides which matches first and how /docs lists them.
ROUTERS = (
    pages.router,
    review.router,
    outliers.router,
    stats.router,
    search.router,
    items.router,
    duplicates.router,
)


def store_state(app: FastAPI, settings: WebSettings, keys: KeyFile | None) -> None:
    """The objects the routes share (imagesim.web.deps hands them out)."""
    backend = Backend(
        settings.embedder,
        settings.shards,
        settings.timeout,
        settings.max_upload_bytes,
        settings.backend,
    )
    images = ImagesRoot(settings.images_root)
    signature = partial(collection_signature, backend)

    def thumbnail_limits() -> tuple[int, int, int]:
        image = backend.limits().image
        file_bytes = max(image.max_bytes, settings.max_upload_bytes)
        return file_bytes, image.max_pixels, image.max_decoded_bytes

    app.state.settings = settings
    app.state.keys = keys
    app.state.backend = backend
    app.state.images = images
    app.state.jobs = DuplicateJobs(
        backend.collection, signature, settings.duplicates_neighbors, settings.timeout
    )
    app.state.thumbnails = ThumbnailCache(
        images,
        settings.thumbnail_size,
        settings.thumbnail_cache_bytes,
        settings.thumbnail_workers,
        thumbnail_limits,
        wait_seconds=settings.timeout,
    )
    app.state.outliers = Outliers(backend, signature, settings.timeout)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    backend: Backend = app.state.backend
    await anyio.to_thread.run_sync(backend.limits)  # at most 2 s if the embedder is down
    yield
    await anyio.to_thread.run_sync(app.state.jobs.close)
    backend.close()


def add_middleware(app: FastAPI, settings: WebSettings, keys: KeyFile | None) -> None:
    backend: Backend = app.state.backend

    async def max_image_bytes() -> int:
        return (await anyio.to_thread.run_sync(backend.limits)).image.max_bytes

    app.add_middleware(
        UploadGuard,
        paths={"/api/search"},
        max_image_bytes=max_image_bytes,
        timeout=settings.upload_timeout,
        max_concurrent=settings.max_uploads,
    )
    # Middleware runs outermost (added last) first: metrics, headers, Host, origin, key, upload
    # limits. Another site's request, or a caller without a key, is refused before an upload
    # takes a slot or a byte is buffered.
    if keys is not None:
        app.add_middleware(ApiKeyAuth, keys=keys)
    app.add_middleware(SameOriginOnly)  # keys or not: the API works for its own pages only
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(SecurityHeaders)


def create_app(
    settings: WebSettings,
    keys: KeyFile | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The application; `keys`: callers need an API key (imagesim.web.auth); `registry`:
    requests are counted into it (imagesim.web.metrics)."""
    app = FastAPIOffline(
        title="imagesim",
        version="1",
        summary="Image similarity search over HTTP: search by image, more like this, "
        "near-duplicate groups, thumbnails.",
        description='Errors answer with `{"error": {"status", "code", "reason", '
        '"title", "message"}}`; match on `reason`. Distances: smaller is closer '
        "(angular: sqrt(2 - 2 cos)).",
        lifespan=lifespan,
    )
    store_state(app, settings, keys)
    install_error_handlers(app)
    add_middleware(app, settings, keys)
    if registry is not None:
        app.add_middleware(HttpMetrics, registry=registry, router=app.router)
    if keys is not None:
        app.include_router(login.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
    customize_openapi(app, settings, keys_checked=keys is not None)
    return app
