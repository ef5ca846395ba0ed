"""Signing in to the page when the web server uses API keys: a form posts the key once, the
answer sets it in a cookie the browser then sends with every page, API call and thumbnail.

The cookie is `__Host-imagesim-key`: HttpOnly (no script, so no injected one, can read it),
Secure (never sent over plain HTTP; browsers make an exception for localhost), SameSite=Strict
(never sent with a request another site starts: no cross-site request forgery), for this host
and Path=/ only, for LOGIN_SECONDS. It holds the key itself, so removing the key from the key
file signs out every browser holding it within seconds, on every replica, with no session
store. Only `read` keys are accepted here: the page needs nothing more, and a browser should
not keep a key that can change the collection (programs use write and admin keys in the
Authorization header).

Sign-in and sign-out are refused to requests another site's page starts (Sec-Fetch-Site,
Origin: imagesim.web.origin, before they get here: no login CSRF with someone else's key);
they read at most MAX_FORM_BYTES within FORM_SECONDS, and never log the key. create_app
includes these routes only when keys are checked.
"""

from urllib.parse import parse_qs, quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from imagesim.security import Role
from imagesim.web.auth import KEY_COOKIE, cookie_value, log
from imagesim.web.deps import KeysDep
from imagesim.web.errors import error_response
from imagesim.web.reasons import WebReason
from imagesim.web.routes.pages import STATIC

LOGIN_SECONDS = 8 * 3600  # how long a browser stays signed in
MAX_FORM_BYTES = 4096
MAX_KEY_CHARS = 1024  # the cookie must stay under browsers' 4 KB
MAX_NEXT_CHARS = 2048
FORM_SECONDS = 10.0


def safe_next(target: str) -> str:
    """Where to go after signing in: a path on this server, else "/". Refused: other hosts
    (`//host`, `/\\host`, which browsers read as `//host`), control characters and spaces
    (browsers drop tabs and newlines, turning `/\\t/host` into `//host`), non-ASCII, the
    sign-in pages themselves."""
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or len(target) > MAX_NEXT_CHARS
        or any(not 0x21 <= ord(c) < 0x7F for c in target)
        or target.split("?", 1)[0] in ("/login", "/logout")
    ):
        return "/"
    return target


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


async def _form(request: Request) -> dict[str, str] | Response:
    """The urlencoded form, read within the limits; or the error answer."""
    length = request.headers.get("content-length")
    too_large = error_response(
        413, "INVALID_ARGUMENT", WebReason.INVALID_REQUEST, f"at most {MAX_FORM_BYTES} bytes"
    )
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        return too_large
    body = bytearray()
    try:
        with anyio.fail_after(FORM_SECONDS):
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_FORM_BYTES:
                    return too_large
    except TimeoutError:
        return error_response(
            408, "DEADLINE_EXCEEDED", WebReason.UPLOAD_TOO_SLOW, "the form did not arrive in time"
        )
    try:
        fields = parse_qs(body.decode(), max_num_fields=8)
    except (UnicodeDecodeError, ValueError):
        return error_response(400, "INVALID_ARGUMENT", WebReason.INVALID_REQUEST, "not a form")
    return {name: values[0] for name, values in fields.items()}


router = APIRouter(include_in_schema=False)


@router.get("/login")
def login_page() -> FileResponse:
    return FileResponse(STATIC / "login.html", headers={"Cache-Control": "no-store"})


@router.post("/login")
async def sign_in(request: Request, keys: KeysDep) -> Response:
    form = await _form(request)
    if isinstance(form, Response):
        return form
    key = form.get("key", "").strip()
    target = safe_next(form.get("next", "/"))
    role = keys.role_of(key) if keys is not None and len(key) <= MAX_KEY_CHARS else None
    client = request.client.host if request.client else "?"
    if role is not Role.READ:
        failed = "key" if role is None else "role"
        why = "unknown key" if role is None else f"a key with the '{role.label}' role"
        log.info("sign-in refused from %s: %s", client, why)
        again = f"/login?failed={failed}&next={quote(target, safe='')}"
        return _no_store(RedirectResponse(again, status_code=303))
    log.info("signed in from %s", client)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        KEY_COOKIE,
        cookie_value(key),
        max_age=LOGIN_SECONDS,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return _no_store(response)


@router.post("/logout")
def sign_out() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(KEY_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return _no_store(response)
