"""Searching: by an uploaded image (/api/search), from an item of the collection
(/api/similar)."""

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.exceptions import RequestValidationError

from imagesim.client.collection import SearchResult
from imagesim.errors import InvalidArgument
from imagesim.params import SearchParams
from imagesim.web import models
from imagesim.web.deps import BackendDep, Key, SettingsDep
from imagesim.web.errors import openapi_errors
from imagesim.web.reasons import WebReason
from imagesim.web.settings import WebSettings
from imagesim.web.urls import similar_url, thumbnail_url

MAX_FILTERS = 16
MAX_FILTER_CHARS = 1024

router = APIRouter(tags=["api"])

# `k`'s default and maximum are settings (--default-k, --max-k): checked by bounded_k and
# documented by imagesim.web.openapi.
K = Annotated[int | None, Query(ge=1, description="how many results")]
MaxDistance = Annotated[
    float | None,
    Query(ge=0, allow_inf_nan=False, description="only results at most this far"),
]
Where = Annotated[
    list[str],
    Query(description="metadata filter KEY=VALUE (repeatable; all must match)"),
]


def bounded_k(k: int | None, settings: WebSettings, source: str) -> int:
    """`k`, or the default; over --max-k: 422 as if the parameter declared the bound
    (`source`: "query" or "body", where the parameter came from)."""
    if k is None:
        return settings.default_k
    if k > settings.max_k:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": (source, "k"),
                    "msg": f"Input should be less than or equal to {settings.max_k}",
                    "input": k,
                    "ctx": {"le": settings.max_k},
                }
            ]
        )
    return k


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


@router.post(
    "/api/search",
    response_model=models.SearchResponse,
    responses=openapi_errors(400, 408, 413, 415, 422, 502, 503, 504),
)
def search(
    backend: BackendDep,
    settings: SettingsDep,
    image: Annotated[UploadFile, File(description="the image file (JPEG, PNG, ...)")],
    k: Annotated[int | None, Form(ge=1)] = None,
    max_distance: Annotated[float | None, Form(ge=0, allow_inf_nan=False)] = None,
    where: Annotated[list[str] | None, Form(description="KEY=VALUE, repeatable")] = None,
    allow_partial: Annotated[bool, Form()] = False,
    metadata: Annotated[bool, Form(description="return each result's metadata")] = False,
) -> models.SearchResponse:
    """The collection's images most like an uploaded one, closest first."""
    params = SearchParams(
        k=bounded_k(k, settings, "body"),
        max_distance=max_distance,
        where=parse_where(where or []),
        include_metadata=metadata,
    )
    data = image.file.read(backend.limits().image.max_bytes + 1)
    result = backend.search_image(data, params, allow_partial)
    return search_response(image.filename or "upload", result, params)


@router.get(
    "/api/similar",
    response_model=models.SearchResponse,
    responses=openapi_errors(400, 404, 422, 502, 503, 504),
)
def similar(
    backend: BackendDep,
    settings: SettingsDep,
    key: Key,
    k: K = None,
    max_distance: MaxDistance = None,
    where: Where = [],  # noqa: B006 - FastAPI copies query defaults
    allow_partial: bool = False,
    metadata: bool = False,
) -> models.SearchResponse:
    """More like this: the neighbours of an item of the collection (itself left out)."""
    params = SearchParams(
        k=bounded_k(k, settings, "query"),
        max_distance=max_distance,
        where=parse_where(where),
        include_metadata=metadata,
    )
    return search_response(key, backend.similar(key, params, allow_partial), params)
