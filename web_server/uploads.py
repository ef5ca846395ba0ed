"""Upload limits, enforced before a byte of the body reaches the framework (ASGI middleware).

For the upload routes: at most `max_concurrent` uploads are received or searched at once
(more get 503 at once, so slow uploads cannot pile up memory); a Content-Length over the limit
gets 413 before the body is read; a body that grows over the limit while arriving (chunked
uploads) gets 413 as soon as it does; the whole body must arrive within `timeout` seconds
(408 otherwise: a client trickling bytes cannot hold a slot). The limit is the embedder's
largest image plus room for the form's other fields. Memory held by uploads is thus at most
`max_concurrent` x the limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagesim.errors import Reason
from imagesim.web.errors import error_response
from imagesim.web.reasons import WebReason

FORM_OVERHEAD_BYTES = 64 * 1024  # multipart boundaries, headers and the small fields


class _TooLarge(Exception):
    pass


class UploadGuard:
    def __init__(
        self,
        app: ASGIApp,
        paths: set[str],
        max_image_bytes: Callable[[], Awaitable[int]],
        timeout: float,
        max_concurrent: int,
    ) -> None:
        self.app = app
        self.paths = paths
        self.max_image_bytes = max_image_bytes
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if self.active >= self.max_concurrent:
            response = error_response(
                503,
                "RESOURCE_EXHAUSTED",
                WebReason.TOO_MANY_UPLOADS,
                f"{self.max_concurrent} uploads are being handled",
            )
            await response(scope, receive, send)
            return
        self.active += 1
        try:
            await self._limited(scope, receive, send)
        finally:
            self.active -= 1

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        image_limit = await self.max_image_bytes()
        limit = image_limit + FORM_OVERHEAD_BYTES
        too_large = error_response(
            413,
            "INVALID_ARGUMENT",
            Reason.IMAGE_TOO_LARGE,
            f"the upload is over the limit of {image_limit:,} bytes for an image",
        )
        too_large.headers["Connection"] = "close"
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nothing to answer
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise _TooLarge
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except _TooLarge:
            await too_large(scope, receive, send)
            return
        except TimeoutError:
            slow = error_response(
                408,
                "DEADLINE_EXCEEDED",
                WebReason.UPLOAD_TOO_SLOW,
                f"the upload did not arrive within {self.timeout:g} s",
            )
            slow.headers["Connection"] = "close"
            await slow(scope, receive, send)
            return
        body = b"".join(chunks)
        del chunks
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
