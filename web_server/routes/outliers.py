"""The most isolated items of the collection (the outliers page's API)."""

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query

from imagesim.web.deps import OutliersDep
from imagesim.web.errors import openapi_errors
from imagesim.web.review import MAX_OUTLIERS, outliers_response

router = APIRouter(tags=["api"])


@router.get("/api/outliers", responses=openapi_errors(422, 502, 503, 504))
async def api_outliers(
    outliers: OutliersDep,
    n: Annotated[int, Query(ge=1, le=MAX_OUTLIERS, description="how many")] = 50,
) -> dict[str, Any]:
    """The `n` most isolated items, most isolated first: `score` is the mean distance to
    their nearest other items (computed once per collection state, one scan at a time)."""
    report = await anyio.to_thread.run_sync(outliers.get)
    return outliers_response(report, n)
