"""The ASGI application: the pages, the JSON API (documented at /docs) and their limits.

Routes are thin: parse and bound the parameters, call the Backend (client library), the
thumbnail cache or the duplicate finder off the event loop, shape the JSON. Errors become
HTTP statuses in imagesim.web.errors only.

(No `from __future__ import annotations` here: FastAPI reads the routes' parameter annotations,
which refer to aliases built from the settings inside create_app.)
"""

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Literal

import anyio
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagesim.client.collection import SearchResult
from imagesim.client.duplicates import DuplicateReport
from imagesim.client.images_root import MAX_KEY_CHARS, ImagesRoot
from imagesim.errors import InvalidArgument, NotFound
from imagesim.params import SearchParams
from imagesim.security import KeyFile
from imagesim.web import models
from imagesim.web.auth import ApiKeyAuth, caller_may_read
from imagesim.web.backend import Backend
from imagesim.web.duplicate_jobs import DuplicateJobs, Progress
from imagesim.web.errors import install_error_handlers, openapi_errors
from imagesim.web.login import add_login_routes
from imagesim.web.metrics import HttpMetrics
from imagesim.web.origin import SameOriginOnly
from imagesim.web.reasons import WebReason
from imagesim.web.review import add_review_routes
from imagesim.web.settings import WebSettings
from imagesim.web.thumbnails import ThumbnailCache
from imagesim.web.uploads import UploadLimits
from imagesim.web.urls import similar_url, thumbnail_url

STATIC = Path(__file__).parent / "static"
MAX_FILTERS = 16
MAX_FILTER_CHARS = 1024
MAX_DUPLICATES_WAIT = 30.0

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc", "/docs/oauth2-redirect")


class SecurityHeaders:
    """nosniff, no referrer to other sites, no framing on every answer; a strict CSP on
    everything but the API docs (Swagger UI runs an inline script).

    Referrer-Policy is same-origin, not no-referrer: under no-referrer a browser sends
    `Origin: null` with the page's own form posts, which imagesim.web.origin must refuse."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        if scope["path"] not in DOCS_PATHS:
            extra.append((b"content-security-policy", CONTENT_SECURITY_POLICY.encode()))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def parse_where(pairs: list[str]) -> dict[str, str]:
    """`KEY=VALUE` strings -> a metadata filter (every pair must match)."""
    if len(pairs) > MAX_FILTERS:
        raise InvalidArgument(f"at most {MAX_FILTERS} filters", reason=WebReason.INVALID_REQUEST)
    where = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip() or len(pair) > MAX_FILTER_CHARS:
            raise InvalidArgument(
                f"a filter is KEY=VALUE, not {pair[:80]!r}", reason=WebReason.INVALID_REQUEST
            )
        where[name.strip()] = value.strip()
    return where


def search_response(
    query: str, result: SearchResult, params: SearchParams
) -> models.SearchResponse:
    return models.SearchResponse(
        query=query,
        k=params.k,
        max_distance=params.max_distance,
        neighbors=[
            models.Neighbor(
                rank=rank,
                key=n.key,
                distance=float(n.distance),
                shard=n.shard,
                metadata=dict(n.metadata) if n.metadata is not None else None,
                thumbnail=thumbnail_url(n.key),
                similar=similar_url(n.key),
            )
            for rank, n in enumerate(result.neighbors, 1)
        ],
        missing_shards=sorted(result.missing),
    )


def duplicates_response(
    answer: DuplicateReport | Progress, page: int, page_size: int, members: int, asked: float
) -> models.DuplicatesResponse:
    if isinstance(answer, Progress):
        return models.DuplicatesResponse(
            status="computing",
            max_distance=asked,
            items=answer.done,
            total=answer.total,
            computing=answer.max_distance,
        )
    pages = math.ceil(len(answer.groups) / page_size)
    shown = answer.groups[(page - 1) * page_size : page * page_size]
    return models.DuplicatesResponse(
        status="done",
        max_distance=answer.max_distance,
        items=answer.items,
        total=answer.items,
        groups_total=len(answer.groups),
        duplicated_items=answer.duplicated_items,
        page=page,
        pages=pages,
        page_size=page_size,
        seconds=round(answer.seconds, 3),
        groups=[
            models.DuplicateGroupModel(
                size=group.size,
                members=[
                    models.GroupMember(key=key, closest=closest, thumbnail=thumbnail_url(key))
                    for key, closest in zip(
                        group.keys[:members], group.closest[:members], strict=True
                    )
                ],
            )
            for group in shown
        ],
    )


def add_bearer_scheme(app: FastAPI, open_paths: set[str]) -> None:
    """The API docs say every operation but `open_paths` needs `Authorization: Bearer KEY`
    (Swagger UI then offers "Authorize"; signed in, its calls carry the cookie anyway)."""
    plain = app.openapi

    def openapi() -> dict:
        schema = plain()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "an API key"}
        }
        schema["security"] = [{"bearer": []}]
        for path in open_paths & set(schema["paths"]):
            for operation in schema["paths"][path].values():
                operation["security"] = []
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    settings: WebSettings,
    keys: KeyFile | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The application; `keys`: callers need an API key (imagesim.web.auth); `registry`:
    requests are counted into it (imagesim.web.metrics)."""
    backend = Backend(
        settings.embedder,
        settings.shards,
        settings.timeout,
        settings.max_upload_bytes,
        settings.backend,
    )
    images = ImagesRoot(settings.images_root)
    jobs = DuplicateJobs(
        backend.collection,
        lambda: _signature(backend),
        settings.duplicates_neighbours,
        settings.timeout,
    )

    def thumbnail_limits() -> tuple[int, int, int]:
        limits = backend.limits()
        file_bytes = max(limits.max_image_bytes, settings.max_upload_bytes)
        return file_bytes, limits.max_image_pixels, limits.max_decoded_bytes

    thumbnails = ThumbnailCache(
        images,
        settings.thumbnail_size,
        settings.thumbnail_cache_bytes,
        settings.thumbnail_workers,
        thumbnail_limits,
        wait_seconds=settings.timeout,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(backend.limits)  # at most 2 s if the embedder is down
        yield
        await anyio.to_thread.run_sync(jobs.close)
        backend.close()

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
    app.state.backend = backend
    app.state.thumbnails = thumbnails
    install_error_handlers(app)

    async def max_image_bytes() -> int:
        return (await anyio.to_thread.run_sync(backend.limits)).max_image_bytes

    app.add_middleware(
        UploadLimits,
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
        add_login_routes(app, keys, STATIC / "login.html")
        add_bearer_scheme(app, {"/healthz", "/readyz"})
    app.add_middleware(SameOriginOnly)  # keys or not: the API works for its own pages only
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(SecurityHeaders)
    if registry is not None:
        app.add_middleware(HttpMetrics, registry=registry, router=app.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # ---- pages ----------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def search_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/duplicates", include_in_schema=False)
    def duplicates_page() -> FileResponse:
        return FileResponse(STATIC / "duplicates.html", headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    add_review_routes(app, settings, backend, jobs, lambda: _signature(backend), STATIC)

    # ---- health ---------------------------------------------------------------------------

    @app.get("/healthz", response_model=models.Health, tags=["health"])
    def healthz() -> models.Health:
        """Liveness: the web server answers (the services may still be down: see /readyz)."""
        return models.Health(status="ok")

    @app.get(
        "/readyz",
        response_model=models.Readiness,
        tags=["health"],
        responses={503: {"model": models.Readiness, "description": "a service is down"}},
    )
    def readyz(request: Request) -> JSONResponse:
        """Readiness: the embedder and every shard answer (checked at most every 2 s). Behind
        API keys, a caller without a read key gets the status only (no addresses, no errors)."""
        shards, embedder = backend.readiness()
        ready = embedder == "ok" and all(state == "ok" for state in shards.values())
        status: Literal["ready", "unavailable"] = "ready" if ready else "unavailable"
        if caller_may_read(request.scope):
            body = models.Readiness(status=status, embedder=embedder, shards=shards)
        else:
            hidden = "ok" if embedder == "ok" else "unavailable"
            body = models.Readiness(status=status, embedder=hidden, shards={})
        return JSONResponse(body.model_dump(), status_code=200 if ready else 503)

    # ---- API ------------------------------------------------------------------------------

    K = Annotated[int, Query(ge=1, le=settings.max_k, description="how many results")]
    MaxDistance = Annotated[
        float | None,
        Query(ge=0, allow_inf_nan=False, description="only results at most this far"),
    ]
    Where = Annotated[
        list[str],
        Query(description="metadata filter KEY=VALUE (repeatable; all must match)"),
    ]
    Key = Annotated[str, Query(min_length=1, max_length=MAX_KEY_CHARS, description="item key")]

    @app.get("/api/limits", response_model=models.Limits, tags=["api"])
    def limits() -> models.Limits:
        """What an upload may be (the embedder's limits) and the search defaults."""
        upload = backend.limits()
        return models.Limits(
            max_image_bytes=upload.max_image_bytes,
            max_image_pixels=upload.max_image_pixels,
            max_decoded_bytes=upload.max_decoded_bytes,
            from_embedder=upload.from_embedder,
            default_k=settings.default_k,
            max_k=settings.max_k,
            duplicates_distance=settings.duplicates_distance,
            thumbnail_size=settings.thumbnail_size,
            api_keys=keys is not None,
        )

    @app.post(
        "/api/search",
        response_model=models.SearchResponse,
        tags=["api"],
        responses=openapi_errors(400, 408, 413, 415, 422, 502, 503, 504),
    )
    def search(
        image: Annotated[UploadFile, File(description="the image file (JPEG, PNG, ...)")],
        k: Annotated[int, Form(ge=1, le=settings.max_k)] = settings.default_k,
        max_distance: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
        where: Annotated[list[str] | None, Form(description="KEY=VALUE, repeatable")] = None,
        allow_partial: Annotated[bool, Form()] = False,
        metadata: Annotated[bool, Form(description="return each result's metadata")] = False,
    ) -> models.SearchResponse:
        """The collection's images most like an uploaded one, closest first."""
        data = image.file.read(backend.limits().max_image_bytes + 1)
        params = SearchParams(
            k=k,
            max_distance=max_distance,
            where=parse_where(where or []),
            include_metadata=metadata,
        )
        result = backend.search_image(data, params, allow_partial)
        return search_response(image.filename or "upload", result, params)

    @app.get(
        "/api/similar",
        response_model=models.SearchResponse,
        tags=["api"],
        responses=openapi_errors(400, 404, 422, 502, 503, 504),
    )
    def similar(
        key: Key,
        k: K = settings.default_k,
        max_distance: MaxDistance = None,
        where: Where = [],  # noqa: B006 - FastAPI copies query defaults
        allow_partial: bool = False,
        metadata: bool = False,
    ) -> models.SearchResponse:
        """More like this: the neighbours of an item of the collection (itself left out)."""
        params = SearchParams(
            k=k, max_distance=max_distance, where=parse_where(where), include_metadata=metadata
        )
        return search_response(key, backend.similar(key, params, allow_partial), params)

    @app.get(
        "/api/items/{key:path}",
        response_model=models.ItemResponse,
        tags=["api"],
        responses=openapi_errors(400, 404, 503, 504),
    )
    def item(key: str) -> models.ItemResponse:
        """One item's metadata (file size, width, height, mtime, and what it was indexed with)."""
        if len(key) > MAX_KEY_CHARS:
            raise InvalidArgument("the key is too long", reason=WebReason.INVALID_REQUEST)
        found = backend.item(key)
        return models.ItemResponse(
            key=found.key,
            metadata=found.metadata,
            dimension=len(found.vector),
            thumbnail=thumbnail_url(found.key),
        )

    @app.get(
        "/api/thumbnail",
        tags=["api"],
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {}}, "description": "a JPEG thumbnail"},
            304: {"description": "the copy named by If-None-Match is current"},
            **openapi_errors(400, 403, 404, 413, 415, 503),
        },
    )
    def thumbnail(request: Request, key: Key) -> Response:
        """A JPEG thumbnail of an item's image file (only for keys in the collection, only
        files under --images-root)."""
        if not backend.contains(key):
            raise NotFound(f"{key[:200]!r} is not in the collection")
        made = thumbnails.get(key, request.headers.get("if-none-match"))
        headers = {"Cache-Control": "private, max-age=3600"}
        if made is None:
            return Response(status_code=304, headers=headers)
        headers["ETag"] = made.etag
        return Response(made.data, media_type="image/jpeg", headers=headers)

    @app.get(
        "/api/duplicates",
        response_model=models.DuplicatesResponse,
        tags=["api"],
        responses={
            202: {"model": models.DuplicatesResponse, "description": "still computing"},
            **openapi_errors(422, 502, 503, 504),
        },
    )
    def duplicates(
        max_distance: Annotated[float, Query(ge=0, le=1e6, allow_inf_nan=False)] = (
            settings.duplicates_distance
        ),
        page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 20,
        members: Annotated[int, Query(ge=1, le=200, description="members shown per group")] = 24,
        wait: Annotated[
            float, Query(ge=0, le=MAX_DUPLICATES_WAIT, description="seconds to wait")
        ] = settings.duplicates_wait,
    ) -> JSONResponse:
        """Groups of near-duplicates in the whole collection, largest first, a page at a
        time. The first request for a threshold starts the search (one at a time) and answers
        202 with its progress if it takes longer than `wait`: ask again."""
        answer = jobs.get(max_distance, wait)
        body = duplicates_response(answer, page, page_size, members, max_distance)
        status = 202 if isinstance(answer, Progress) else 200
        headers = {"Retry-After": "1"} if status == 202 else None
        return JSONResponse(body.model_dump(), status_code=status, headers=headers)

    @app.get(
        "/api/stats",
        response_model=models.StatsResponse,
        tags=["api"],
        responses=openapi_errors(502, 503, 504),
    )
    def stats() -> models.StatsResponse:
        """Items per shard and in all."""
        shards = backend.stats()
        return models.StatsResponse(
            count=sum(s.count for s in shards),
            shards=[models.ShardStats.model_validate(s, from_attributes=True) for s in shards],
        )

    return app


def _signature(backend: Backend) -> tuple[tuple, int]:
    shards = backend.stats()
    state = tuple((s.shard_id, s.count, s.generation, s.staged, s.hidden) for s in shards)
    return state, sum(s.count for s in shards)
