"""Reviewing the duplicates: the plan a person edited (download), its apply (move to the
quarantine folder, `write` key), the manifests it writes, and what this caller may do.
The logic and its limits are in imagesim.web.review."""

from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import ValidationError

from imagesim.errors import InvalidArgument
from imagesim.web import review
from imagesim.web.deps import BackendDep, ImagesDep, JobsDep, MayWrite, SettingsDep
from imagesim.web.errors import openapi_errors
from imagesim.web.reasons import WebReason

router = APIRouter(tags=["review"])


@router.get("/api/review/config")
def review_config(settings: SettingsDep, may_write: MayWrite) -> dict[str, Any]:
    """What the duplicates page may offer this caller: `apply` when a quarantine folder is
    set and the caller holds a write key (or no keys are checked)."""
    return review.config(settings, may_write)


@router.post("/api/review/plan", responses=openapi_errors(400, 413, 422, 503, 504))
async def review_plan(
    request: Request,
    settings: SettingsDep,
    backend: BackendDep,
    jobs: JobsDep,
    images: ImagesDep,
) -> JSONResponse:
    """The duplicates plan at `max_distance` (the same JSON as `imagesim duplicates
    --plan`): the keepers `keep_rule` chooses, then the person's `edits` (a group's keeper,
    its unticked members). Body: {"max_distance", "keep_rule", "edits": [{"group", "keep",
    "skip"}]}."""
    body = review.parse_json(await review.read_body(request))
    try:
        wanted = review.PlanRequest.model_validate(body)
    except ValidationError as exc:
        raise InvalidArgument(
            "; ".join(str(e["msg"]) for e in exc.errors()[:3]),
            reason=WebReason.INVALID_REQUEST,
        ) from None
    build = partial(review.build_plan, wanted, settings, backend, jobs, images)
    plan = await anyio.to_thread.run_sync(build)
    return JSONResponse(
        plan.to_json(),
        headers={
            "Content-Disposition": 'attachment; filename="plan.json"',
            "Cache-Control": "no-store",
        },
    )


@router.post("/api/review/apply", responses=openapi_errors(400, 403, 409, 413, 503, 504))
async def review_apply(
    request: Request, settings: SettingsDep, backend: BackendDep, images: ImagesDep
) -> JSONResponse:
    """Move the files a plan marks into the quarantine folder and remove their items
    (`write` key). Body: a plan as /api/review/plan gives it. The answer names the
    manifest (download it at `manifest_url`; `imagesim undo` takes it)."""
    data = review.parse_json(await review.read_body(request))
    apply = partial(review.apply, data, settings, backend, images)
    result = await anyio.to_thread.run_sync(apply)
    return JSONResponse(result, headers={"Cache-Control": "no-store"})


@router.get("/api/review/manifest", responses=openapi_errors(404, 422))
def review_manifest(
    settings: SettingsDep, name: Annotated[str, Query(max_length=80)]
) -> FileResponse:
    """A manifest an apply wrote into the quarantine folder (`write` key)."""
    return FileResponse(
        review.manifest_path(settings, name),
        media_type="application/json",
        filename=name,
        headers={"Cache-Control": "no-store"},
    )
