"""The access log: one line a request, in uvicorn's format (uvicorn's own is off):
`CLIENT - "METHOD PATH[?QUERY] HTTP/VERSION" STATUS`.

With API keys, the query string is written only for a caller whose key was accepted: the
address of a refused request may hold a key someone put there (`/api/stats?key=...`, which
the server never reads), and so may the sign-in page's `next`. Keys themselves travel in a
header or the sign-in cookie, which are never logged.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagesim.web.auth import ROLE_STATE

log = logging.getLogger("imagesim.web.access")
HIDDEN_QUERY = "?..."


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def query_shown(scope: Scope, keys_checked: bool) -> bool:
    """Whether the request's query string may be logged: keys are not checked, or the
    caller's key was accepted (a request refused before its key was looked at has none)."""
    if not keys_checked:
        return True
    return (scope.get("state") or {}).get(ROLE_STATE) is not None


class AccessLog:
    """ASGI middleware around the whole application (error answers included); it reads the
    caller's role the key check leaves in the scope."""

    def __init__(self, app: ASGIApp, keys_checked: bool) -> None:
        self.app = app
        self.keys_checked = keys_checked

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Read before the request runs: a mounted app (the static files) rewrites the scope.
        path = scope.get("raw_path", scope["path"].encode()).decode("latin-1").replace('"', "%22")
        query = scope.get("query_string", b"").decode("latin-1").replace('"', "%22")

        async def logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                target = path
                if query:
                    shown = query_shown(scope, self.keys_checked)
                    target += ("?" + query) if shown else HIDDEN_QUERY
                log.info(
                    '%s - "%s %s HTTP/%s" %d',
                    _client(scope),
                    scope["method"],
                    target,
                    scope.get("http_version", "1.1"),
                    message["status"],
                )
            await send(message)

        await self.app(scope, receive, logged)
