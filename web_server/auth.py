"""API keys on the web server: which paths need which role, and the ASGI middleware that checks
the caller's key before the request reaches a route (or an upload is buffered).

A key comes in `Authorization: Bearer KEY` (programs) or in the sign-in cookie the page's
/login sets (browsers, whose `<img src>` and page loads cannot carry a header). Both are
looked up in the key file in constant time (imagesim.security.ApiKeys.role_of). Never from
the query string: addresses end up in logs, histories and Referer headers.

Open: health (/healthz, /readyz: probes; /readyz names the services and their errors only to a
caller with a read key), sign-in and sign-out, the static files (the page's own scripts and
styles, the API docs' assets: the same files as in the package). Pages
(/, /duplicates, /outliers, /docs) without a key redirect to /login. WRITE_PATHS (applying a
duplicates plan, its manifests) need `write`. Everything else, /api/* and /openapi.json
included, needs `read`; a path nobody listed needs it too (closed by default).
No key or an unknown key: 401 with `WWW-Authenticate: Bearer`; a key without the role: 403
naming the role.

The cookie counts only on requests the browser says come from this origin (or that a person
typed): SameSite=Strict still sends it from another host of the same site (a sibling
subdomain), whose `<img src>` or form could otherwise make a signed-in person's browser start
expensive searches. Browsers too old to send `Sec-Fetch-Site` still have SameSite.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from enum import Enum
from urllib.parse import quote

from starlette.requests import cookie_parser
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from imagesim.errors import Reason
from imagesim.security import KeyFile, Role, bearer_token
from imagesim.web.errors import error_response

log = logging.getLogger("imagesim.web")

# `__Host-`: the browser only accepts it Secure, for this exact host, for Path=/ (no
# subdomain or plain-HTTP page can plant or overwrite it).
KEY_COOKIE = "__Host-imagesim-key"
REALM = "imagesim"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login", "/logout", "/favicon.ico"})
OPEN_PREFIXES = ("/static/", "/static-offline-docs/")
PAGES = frozenset({"/", "/duplicates", "/outliers", "/docs", "/redoc", "/docs/oauth2-redirect"})
# Paths that change the collection or its files: they need `write` (imagesim.web.review)
WRITE_PATHS = frozenset({"/api/review/apply", "/api/review/manifest"})
# Sec-Fetch-Site values for which the cookie counts (absent: an older browser, SameSite decides)
COOKIE_SITES = frozenset({"same-origin", "none"})
# scope["state"] key: the caller's role when keys are checked (None: no valid key)
ROLE_STATE = "imagesim.role"


class Access(Enum):
    OPEN = "open"  # anyone
    PAGE = "page"  # read; a browser without a key is sent to /login
    API = "api"  # read; no key: 401


def access_of(path: str) -> Access:
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return Access.OPEN
    return Access.PAGE if path in PAGES else Access.API


def cookie_value(key: str) -> str:
    """The cookie holding `key` (base64url: a key may hold characters a cookie cannot)."""
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def key_of_cookie(value: str) -> str:
    """The key a cookie holds ("" if it holds none: presented, but no key)."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return ""


def presented_key(scope: Scope) -> tuple[str | None, bool]:
    """(the caller's key, whether it came from the cookie). The header wins when both are
    there; a malformed header counts as no key."""
    authorization = None
    cookies = []
    fetch_site = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            authorization = value.decode("latin-1")
        elif name == b"cookie":
            cookies.append(value.decode("latin-1"))
        elif name == b"sec-fetch-site":
            fetch_site = value.decode("latin-1").strip().lower()
    if authorization is not None:
        return bearer_token(authorization), False
    if fetch_site is not None and fetch_site not in COOKIE_SITES:
        return None, False  # another host's page: its request does not carry this session
    for header in cookies:
        value = cookie_parser(header).get(KEY_COOKIE)
        if value:
            return key_of_cookie(value), True
    return None, False


def role_needed(path: str) -> Role | None:
    """The role a path needs (None: open)."""
    if access_of(path) is Access.OPEN:
        return None
    return Role.WRITE if path in WRITE_PATHS else Role.READ


def caller_may(scope: Scope, needed: Role) -> bool:
    """Whether this request's caller holds a key with the `needed` role (True when no keys
    are checked: keyless mode is one local user)."""
    state = scope.get("state") or {}
    if ROLE_STATE not in state:
        return True
    role: Role | None = state[ROLE_STATE]
    return role is not None and role.allows(needed)


def caller_may_read(scope: Scope) -> bool:
    """Whether this request's caller holds a read key (True when no keys are checked)."""
    return caller_may(scope, Role.READ)


def login_redirect(scope: Scope) -> str:
    """/login?next=<this page>."""
    target = scope["path"]
    if scope.get("query_string"):
        target += "?" + scope["query_string"].decode("latin-1")
    return "/login?next=" + quote(target, safe="")


def refusal(role: Role | None, needed: Role, presented: bool, path: str) -> Response:
    """401 (no key, unknown key) or 403 (a key without the role) as the API's JSON errors."""
    if role is None:
        response = error_response(
            401,
            "UNAUTHENTICATED",
            Reason.UNAUTHENTICATED_CALLER,
            "unknown API key"
            if presented
            else "an API key is needed: send 'Authorization: Bearer KEY' (or sign in at /login)",
            title="An API key is needed." if not presented else "That API key is not valid.",
        )
        challenge = f'Bearer realm="{REALM}"'
        if presented:
            challenge += ', error="invalid_token"'
    else:
        response = error_response(
            403,
            "PERMISSION_DENIED",
            Reason.ROLE_REQUIRED,
            f"{path[:200]} needs the '{needed.label}' role; this key has '{role.label}'",
            title="This API key may not do that.",
        )
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope", scope="{needed.label}"'
    response.headers["WWW-Authenticate"] = challenge
    response.headers["Cache-Control"] = "no-store"
    return response


class ApiKeyAuth:
    """ASGI middleware: lets a request through only with a key whose role `needed(path)`
    allows (None: open)."""

    def __init__(
        self,
        app: ASGIApp,
        keys: KeyFile,
        needed: Callable[[str], Role | None] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.needed = needed or role_needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        needed = self.needed(path)
        key, from_cookie = presented_key(scope)
        role = self.keys.role_of(key)
        scope.setdefault("state", {})[ROLE_STATE] = role
        if needed is None:
            await self.app(scope, receive, send)
            return
        if role is not None and role.allows(needed):
            await self.app(scope, receive, send)
            return
        response: Response
        if access_of(path) is Access.PAGE and scope["method"] in ("GET", "HEAD"):
            response = RedirectResponse(login_redirect(scope), status_code=303)
            response.headers["Cache-Control"] = "no-store"
            if from_cookie:  # a key since removed from the file: forget it
                response.delete_cookie(KEY_COOKIE, secure=True, httponly=True, samesite="strict")
        else:
            response = refusal(role, needed, key is not None, path)
        await response(scope, receive, send)
