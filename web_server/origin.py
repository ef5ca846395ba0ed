"""Requests another site's page starts are refused: the API and every form post answer only
this server's own pages and programs (curl, scripts), with or without API keys.

Without this, any page the user visits could make their browser call the API: start
embeddings and whole-collection duplicate searches on a keyless server, probe which files the
collection holds through thumbnails, or sign the browser in with the attacker's key (login
CSRF). Browsers say where a request comes from: `Sec-Fetch-Site` (all current ones) and
`Origin` (on posts, also older ones). A request is foreign when `Sec-Fetch-Site` is
`cross-site` or `same-site` (another host of the same site, or another port of this host, is
another program's page too), or when `Origin` is there and is not this server's own
(`scheme://host[:port]` of the request itself; `null` is a sandboxed or redirected page).
`same-origin` and `none` (an address the person typed or bookmarked) pass, and so do requests
without either header: browsers always send one on what is checked here, so those come from
programs, which hold no one else's cookie.

Checked: every method but GET and HEAD, and every /api/ request. Page loads, static files and
health stay open to links from anywhere. Behind a proxy, the proxy must pass the browser's
Host header and speak the browser's scheme (HTTPS) to this server.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from imagesim.web.errors import error_response
from imagesim.web.reasons import WebReason

OWN_SITES = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values that pass
DEFAULT_PORTS = {"http": ":80", "https": ":443"}  # browsers leave them out
MAX_SHOWN_CHARS = 100


def checked(scope: Scope) -> bool:
    """Whether the request is one another site must not start."""
    return scope["method"] not in ("GET", "HEAD") or scope["path"].startswith("/api/")


def _origin(scheme: str, host: str) -> str:
    """scheme://host[:port], lower case, without the scheme's default port."""
    scheme, host = scheme.lower(), host.lower()
    default = DEFAULT_PORTS.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return f"{scheme}://{host}"


def foreign(scope: Scope) -> str | None:
    """Where the request comes from if another site's page started it (for the error
    message), else None."""
    headers = {
        name: value.decode("latin-1").strip()
        for name, value in scope["headers"]
        if name in (b"sec-fetch-site", b"origin", b"host")
    }
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.lower() not in OWN_SITES:
        return f"a {site[:MAX_SHOWN_CHARS]} page (Sec-Fetch-Site)"
    origin = headers.get(b"origin")
    if origin is None:
        return None
    scheme, _, host = origin.partition("://")
    own = _origin(scope["scheme"], headers.get(b"host", ""))
    if not host or _origin(scheme, host) != own:
        return f"the page of {origin[:MAX_SHOWN_CHARS]} (Origin), not {own}"
    return None


class SameOriginOnly:
    """ASGI middleware: 403 CROSS_SITE for a checked request another site's page started,
    before a key is looked at or a byte of an upload is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not checked(scope):
            await self.app(scope, receive, send)
            return
        source = foreign(scope)
        if source is None:
            await self.app(scope, receive, send)
            return
        response = error_response(
            403,
            "PERMISSION_DENIED",
            WebReason.CROSS_SITE,
            f"{scope['method']} {scope['path'][:200]} answers only this server's own pages "
            f"and programs; this request came from {source}",
        )
        response.headers["Cache-Control"] = "no-store"
        await response(scope, receive, send)
