"""The server's and the collection's state: health probes, the upload limits and defaults the
page uses, the items per shard and in all."""

from dataclasses import asdict
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from imagesim.types import CollectionTotals
from imagesim.web import models
from imagesim.web.deps import BackendDep, KeysDep, MayRead, SettingsDep
from imagesim.web.errors import openapi_errors

router = APIRouter()


@router.get("/healthz", response_model=models.Health, tags=["health"])
def healthz() -> models.Health:
    """Liveness: the web server answers (the services may still be down: see /readyz)."""
    return models.Health(status="ok")


@router.get(
    "/readyz",
    response_model=models.Readiness,
    tags=["health"],
    responses={503: {"model": models.Readiness, "description": "a service is down"}},
)
def readyz(backend: BackendDep, may_read: MayRead) -> JSONResponse:
    """Readiness: the embedder and every shard answer (checked at most every 2 s). Behind
    API keys, a caller without a read key gets the status only (no addresses, no errors)."""
    shards, embedder = backend.readiness()
    ready = embedder == "ok" and all(state == "ok" for state in shards.values())
    status: Literal["ready", "unavailable"] = "ready" if ready else "unavailable"
    if may_read:
        body = models.Readiness(status=status, embedder=embedder, shards=shards)
    else:
        hidden = "ok" if embedder == "ok" else "unavailable"
        body = models.Readiness(status=status, embedder=hidden, shards={})
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/api/limits", response_model=models.Limits, tags=["api"])
def limits(backend: BackendDep, settings: SettingsDep, keys: KeysDep) -> models.Limits:
    """What an upload may be (the embedder's limits) and the search defaults."""
    upload = backend.limits()
    return models.Limits(
        max_image_bytes=upload.image.max_bytes,
        max_image_pixels=upload.image.max_pixels,
        max_decoded_bytes=upload.image.max_decoded_bytes,
        from_embedder=upload.from_embedder,
        default_k=settings.default_k,
        max_k=settings.max_k,
        duplicates_distance=settings.duplicates_distance,
        thumbnail_size=settings.thumbnail_size,
        api_keys=keys is not None,
    )


@router.get(
    "/api/stats",
    response_model=models.StatsResponse,
    tags=["api"],
    responses=openapi_errors(502, 503, 504),
)
def stats(backend: BackendDep) -> models.StatsResponse:
    """Items per shard and in all: `imagesim stats --json`'s answer (`count`: deprecated,
    `total.count`)."""
    shards = backend.stats()
    total = models.StatsTotal.model_validate(asdict(CollectionTotals.of(shards)))
    return models.StatsResponse(
        shards=[models.ShardStats.model_validate(s.row()) for s in shards],
        total=total,
        count=total.count,
    )
