"""One item of the collection: its metadata (/api/items/KEY) and its thumbnail."""

from fastapi import APIRouter, Request
from fastapi.responses import Response

from imagesim.client.images_root import MAX_KEY_CHARS
from imagesim.errors import InvalidArgument, NotFound
from imagesim.web import models
from imagesim.web.deps import BackendDep, Key, ThumbnailsDep
from imagesim.web.errors import openapi_errors
from imagesim.web.reasons import WebReason
from imagesim.web.urls import thumbnail_url

router = APIRouter(tags=["api"])


@router.get(
    "/api/items/{key:path}",
    response_model=models.ItemResponse,
    responses=openapi_errors(400, 404, 503, 504),
)
def item(backend: BackendDep, key: str) -> models.ItemResponse:
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


@router.get(
    "/api/thumbnail",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "a JPEG thumbnail"},
        304: {"description": "the copy named by If-None-Match is current"},
        **openapi_errors(400, 403, 404, 413, 415, 503),
    },
)
def thumbnail(
    request: Request, backend: BackendDep, thumbnails: ThumbnailsDep, key: Key
) -> Response:
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
