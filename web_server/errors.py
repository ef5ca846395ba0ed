"""HTTP status codes for imagesim errors: the one place that decides them.

Every error answer, from any route or middleware, has the same JSON body:
`{"error": {"status", "code", "reason", "title", "message"}}`. `reason` is what programs match
on; `title` is a sentence for people (the page shows it with `message`). Errors the caller can
fix are 4xx; a backend that is down, slow or busy is 503/504 (with Retry-After where a retry
helps); a backend that answers but is misconfigured for us (layout, space, credentials) is 502.
Unexpected exceptions are 500 with an error id in the log, never their text.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from imagesim.errors import ImagesimError, Reason
from imagesim.web.models import ErrorBody
from imagesim.web.reasons import WebReason

log = logging.getLogger("imagesim.web")

STATUS_BY_REASON: dict[str, int] = {
    Reason.IMAGE_EMPTY: 400,
    Reason.IMAGE_UNDECODABLE: 415,
    Reason.IMAGE_TOO_LARGE: 413,
    Reason.IMAGE_TOO_MANY_PIXELS: 413,
    Reason.DECODE_BUDGET_EXHAUSTED: 503,
    Reason.KEY_EMPTY: 400,
    Reason.KEY_TOO_LONG: 400,
    Reason.KEY_NOT_FOUND: 404,
    Reason.VALUE_OUT_OF_RANGE: 422,
    Reason.TOO_MANY_ITEMS: 422,
    Reason.NOT_READY: 503,
    Reason.SHUTTING_DOWN: 503,
    Reason.LAYOUT_MISMATCH: 502,
    Reason.LAYOUT_CHANGED: 503,
    Reason.SPACE_MISMATCH: 502,
    Reason.SPACE_NOT_OFFERED: 502,
    Reason.DIMENSION_MISMATCH: 502,
    Reason.UNAUTHENTICATED_CALLER: 502,
    Reason.ROLE_REQUIRED: 502,
    WebReason.OUTSIDE_IMAGES_ROOT: 403,
    WebReason.IMAGE_FILE_MISSING: 404,
    WebReason.INVALID_REQUEST: 422,
    WebReason.UPLOAD_TOO_SLOW: 408,
    WebReason.TOO_MANY_UPLOADS: 503,
    WebReason.BUSY: 503,
    WebReason.NO_SUCH_ROUTE: 404,
    WebReason.METHOD_NOT_ALLOWED: 405,
    WebReason.TOO_LARGE: 413,
    WebReason.APPLY_REFUSED: 409,
}

# For reasons not listed above, by gRPC status code name.
STATUS_BY_CODE: dict[str, int] = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "PERMISSION_DENIED": 403,
    "FAILED_PRECONDITION": 502,
    "ABORTED": 503,
    "RESOURCE_EXHAUSTED": 503,
    "UNAVAILABLE": 503,
    "CANCELLED": 503,
    "DEADLINE_EXCEEDED": 504,
    "UNAUTHENTICATED": 502,
    "INTERNAL": 502,
}

TITLES: dict[str, str] = {
    Reason.IMAGE_EMPTY: "The file is empty.",
    Reason.IMAGE_UNDECODABLE: "That file is not an image this service can read.",
    Reason.IMAGE_TOO_LARGE: "That image file is too large.",
    Reason.IMAGE_TOO_MANY_PIXELS: "That image has too many pixels.",
    Reason.DECODE_BUDGET_EXHAUSTED: "The service is busy decoding other images: try again.",
    Reason.KEY_NOT_FOUND: "That image is not in the collection.",
    WebReason.OUTSIDE_IMAGES_ROOT: "That file lies outside the images folder.",
    WebReason.IMAGE_FILE_MISSING: "The image file is missing.",
    WebReason.INVALID_REQUEST: "A parameter is not valid.",
    WebReason.UPLOAD_TOO_SLOW: "The upload took too long.",
    WebReason.TOO_MANY_UPLOADS: "Too many uploads at once: try again in a moment.",
    WebReason.BUSY: "The server is busy: try again in a moment.",
    WebReason.CROSS_SITE: "Requests started by another site are refused.",
    WebReason.TOO_LARGE: "The request is too large.",
    WebReason.APPLY_REFUSED: "The plan cannot be applied now.",
}
TITLES_BY_STATUS: dict[int, str] = {
    404: "Not found.",
    405: "Method not allowed.",
    408: "The request took too long.",
    422: "A parameter is not valid.",
    502: "A search service is misconfigured.",
    503: "A search service is down or busy.",
    504: "A search service did not answer in time.",
}
RETRY_AFTER_SECONDS = 2


def status_of(error: ImagesimError) -> int:
    return STATUS_BY_REASON.get(error.reason) or STATUS_BY_CODE.get(error.code, 500)


def error_response(
    status: int, code: str, reason: str, message: str, title: str | None = None
) -> JSONResponse:
    body = {
        "error": {
            "status": status,
            "code": code,
            "reason": reason,
            "title": title or TITLES.get(reason) or TITLES_BY_STATUS.get(status, "Request failed."),
            "message": message,
        }
    }
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None
    return JSONResponse(body, status_code=status, headers=headers)


def response_for(error: ImagesimError) -> JSONResponse:
    message = error.message
    if error.address and error.address not in message:
        message = f"{message} ({error.address})"
    return error_response(status_of(error), error.code, error.reason, message)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for problem in exc.errors()[:5]:
        where = ".".join(str(p) for p in problem.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{where}: {problem.get('msg', 'invalid')}" if where else problem["msg"])
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ImagesimError)
    async def imagesim_error(_request: Request, exc: ImagesimError) -> JSONResponse:
        return response_for(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(
            422, "INVALID_ARGUMENT", WebReason.INVALID_REQUEST, _validation_message(exc)
        )

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        reason = {404: WebReason.NO_SUCH_ROUTE, 405: WebReason.METHOD_NOT_ALLOWED}.get(
            exc.status_code, WebReason.INVALID_REQUEST
        )
        response = error_response(exc.status_code, "HTTP", reason, str(exc.detail))
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error("error %s", error_id, exc_info=exc)
        return error_response(
            500, "INTERNAL", Reason.INTERNAL_ERROR, f"internal error (id {error_id} in the log)"
        )


def openapi_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error statuses it can answer, documented at /docs."""
    described = {
        400: "bad input (empty image, bad key)",
        403: "the key's file lies outside --images-root",
        404: "no such item, or no file for it",
        408: "the upload did not arrive within --upload-timeout",
        409: "refused now: no quarantine folder, another apply running, another collection",
        413: "image file or pixel count over the embedder's limit",
        415: "not an image",
        422: "a parameter out of range",
        502: "a backend is misconfigured for this collection",
        503: "a backend is down or busy (Retry-After)",
        504: "a backend did not answer in time",
    }
    return {
        status: {"model": ErrorBody, "description": described.get(status, "error")}
        for status in statuses
    }
