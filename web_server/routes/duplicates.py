"""Near-duplicate groups of the whole collection, a page at a time (the search runs in the
background: imagesim.web.duplicate_jobs)."""

import math
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from imagesim.client.duplicates import DuplicateReport
from imagesim.web import models
from imagesim.web.deps import JobsDep, SettingsDep
from imagesim.web.duplicate_jobs import Progress
from imagesim.web.errors import openapi_errors
from imagesim.web.urls import thumbnail_url

MAX_DUPLICATES_WAIT = 30.0

router = APIRouter(tags=["api"])


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


@router.get(
    "/api/duplicates",
    response_model=models.DuplicatesResponse,
    responses={
        202: {"model": models.DuplicatesResponse, "description": "still computing"},
        **openapi_errors(422, 502, 503, 504),
    },
)
def duplicates(
    jobs: JobsDep,
    settings: SettingsDep,
    # max_distance and wait default to settings (documented by imagesim.web.openapi)
    max_distance: Annotated[float | None, Query(ge=0, le=1e6, allow_inf_nan=False)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 20,
    members: Annotated[int, Query(ge=1, le=200, description="members shown per group")] = 24,
    wait: Annotated[
        float | None, Query(ge=0, le=MAX_DUPLICATES_WAIT, description="seconds to wait")
    ] = None,
) -> JSONResponse:
    """Groups of near-duplicates in the whole collection, largest first, a page at a
    time. The first request for a threshold starts the search (one at a time) and answers
    202 with its progress if it takes longer than `wait`: ask again."""
    if max_distance is None:
        max_distance = settings.duplicates_distance
    answer = jobs.get(max_distance, settings.duplicates_wait if wait is None else wait)
    body = duplicates_response(answer, page, page_size, members, max_distance)
    status = 202 if isinstance(answer, Progress) else 200
    headers = {"Retry-After": "1"} if status == 202 else None
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)
