"""imagesim-web behind TLS and API keys: real processes on loopback, certificates made at test
time (tests/pki.py), the keys of the pki fixture (read, write, admin). Every route is called
the way a hostile or a careless caller would."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest

from imagesim.security import KeyFile, Role
from imagesim.web.auth import KEY_COOKIE, WRITE_PATHS, ApiKeyAuth, cookie_value
from imagesim.web.routes.login import FORM_SECONDS, LOGIN_SECONDS
from tests.pki import CertificateAuthority
from tests.support.web import WebProcess
from tests.test_metrics import scrape
from tests.web.conftest import start_secure_web, tls_client

ROLES = ("read", "write", "admin")
WRONG_KEY = "0123456789abcdef-not-a-key"


def client(web: WebProcess, pki, key: str | None = None, **kwargs) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    headers.update(kwargs.pop("headers", {}))
    return httpx.Client(
        base_url=web.url,
        verify=kwargs.pop("verify", tls_client(pki)),
        headers=headers,
        timeout=60,
        follow_redirects=False,
        **kwargs,
    )


def api_calls(web_root: Path, held_out_cat: Path) -> list[tuple[str, str, dict]]:
    """One call of every API route (and the API description), each of which needs `read`."""
    key = str(web_root / "photos" / "chelsea.jpg")
    upload = {"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")}
    return [
        ("POST", "/api/search", {"files": upload, "data": {"k": "3"}}),
        ("GET", "/api/similar", {"params": {"key": key, "k": 3}}),
        ("GET", "/api/duplicates", {"params": {"max_distance": 0.04, "page_size": 2}}),
        ("GET", "/api/items/" + quote(key, safe=""), {}),
        ("GET", "/api/thumbnail", {"params": {"key": key}}),
        ("GET", "/api/stats", {}),
        ("GET", "/api/limits", {}),
        ("GET", "/api/outliers", {"params": {"n": 3}}),
        ("GET", "/api/review/config", {}),
        ("POST", "/api/review/plan", {"json": {"max_distance": 0.04}}),
        ("GET", "/openapi.json", {}),
    ]


def error_of(response: httpx.Response) -> dict:
    error = response.json()["error"]
    assert error["status"] == response.status_code
    return error


@contextmanager
def no_key_logged(web: WebProcess, pki) -> Iterator[None]:
    """What the server logs meanwhile holds no key (nor a cookie holding one)."""
    start = len(web.log_text())
    yield
    text = web.log_text()[start:]
    for key in pki.keys.values():
        assert key not in text and cookie_value(key) not in text


# ---- roles --------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_every_role_may_call_every_api_route(secure_web, pki, web_root, held_out_cat, role):
    with no_key_logged(secure_web, pki):
        calls = api_calls(web_root, held_out_cat)
        with client(secure_web, pki, pki.keys[role]) as http:
            for method, path, kwargs in calls:
                answer = http.request(method, path, **kwargs)
                assert answer.status_code == 200, (role, path, answer.text[:300])
            # The calls above are every route the API documents: a new one is not forgotten.
            paths = http.get("/openapi.json").json()["paths"]
        documented = {p.removesuffix("{key}") for p in paths if p.startswith("/api")}
        documented -= WRITE_PATHS  # write routes: tests/web/test_review.py
        called = {p for _, p, _ in calls if p != "/openapi.json"}
        assert documented == {"/api/items/" if "/items/" in p else p for p in called}


@pytest.mark.parametrize(
    "headers, invalid",
    [
        ({}, False),
        ({"Authorization": f"Bearer {WRONG_KEY}"}, True),
        ({"Authorization": "Bearer"}, False),  # malformed: no key at all
        ({"Cookie": f"{KEY_COOKIE}={cookie_value(WRONG_KEY)}"}, True),
        ({"Cookie": f"{KEY_COOKIE}=%%%not-base64"}, True),
    ],
    ids=["none", "wrong", "empty-bearer", "wrong-cookie", "garbage-cookie"],
)
def test_no_key_or_a_wrong_key_is_401_on_every_api_route(
    secure_web, pki, web_root, held_out_cat, headers, invalid
):
    with no_key_logged(secure_web, pki), client(secure_web, pki, headers=headers) as http:
        for method, path, kwargs in api_calls(web_root, held_out_cat):
            answer = http.request(method, path, **kwargs)
            assert answer.status_code == 401, (path, answer.text[:300])
            challenge = answer.headers["www-authenticate"]
            assert challenge.startswith('Bearer realm="imagesim"')
            assert ('error="invalid_token"' in challenge) == invalid, path
            assert error_of(answer)["reason"] == "UNAUTHENTICATED_CALLER"
            assert answer.headers["cache-control"] == "no-store"


def test_keys_come_only_from_the_header_or_the_sign_in_cookie(secure_web, pki):
    read = pki.keys["read"]
    with client(secure_web, pki) as http:
        for attempt in (
            # never from the address: uvicorn's access log records it (and so do proxies,
            # histories and Referer headers)
            {"params": {"api_key": read}},
            {"params": {"key": read, "token": read, "access_token": read}},
            {"headers": {"Authorization": f"Basic {read}"}},
            {"headers": {"Authorization": read}},
            {"headers": {"X-Api-Key": read}},
            {"headers": {"Cookie": f"imagesim-key={cookie_value(read)}"}},  # not our cookie
        ):
            assert http.get("/api/stats", **attempt).status_code == 401, attempt
        # The header wins over the cookie: a wrong header is not rescued by a good cookie.
        both = http.get(
            "/api/stats",
            headers={
                "Authorization": f"Bearer {WRONG_KEY}",
                "Cookie": f"{KEY_COOKIE}={cookie_value(read)}",
            },
        )
        assert both.status_code == 401
        # No WebSocket detour around the check: an Upgrade is a plain (refused) request.
        upgrade = {
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        }
        assert http.get("/api/stats", headers=upgrade).status_code == 401
        # Paths nobody listed are closed: no key, no 404 telling what exists.
        for path in ("/nothing/here", "/api/nothing", "/api/stats/", "/openapi.yaml"):
            assert http.get(path).status_code == 401, path


def raw_request(web: WebProcess, pki, head: bytes) -> bytes:
    """Send `head` over TLS as is (no client library would send a lying Content-Length) and
    read the start of the answer."""
    host, port = web.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=30) as raw,
        tls_client(pki).wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        sock.sendall(head)
        return sock.recv(65536)


def test_an_unauthenticated_upload_is_refused_before_its_body_is_read(secure_web, pki):
    """No key: 401 at once, whatever the upload claims; it never takes an upload slot."""
    reply = raw_request(
        secure_web,
        pki,
        b"POST /api/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: 1000000000000\r\n\r\n",
    )
    assert reply.startswith(b"HTTP/1.1 401 ")


def test_health_static_files_and_sign_in_are_open_pages_send_you_to_sign_in(secure_web, pki):
    with client(secure_web, pki) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        # Readiness is open for probes, but only a key holder learns the services' addresses
        anonymous_ready = http.get("/readyz")
        assert anonymous_ready.status_code == 200
        assert anonymous_ready.json() == {"status": "ready", "embedder": "ok", "shards": {}}
        ready = http.get("/readyz", headers={"Authorization": f"Bearer {pki.keys['read']}"})
        assert len(ready.json()["shards"]) == 2 and all(
            state == "ok" for state in ready.json()["shards"].values()
        )
        for path in (
            "/static/style.css",
            "/static/common.js",
            "/static/login.js",
            "/static-offline-docs/swagger-ui.css",
            "/favicon.ico",
            "/login",
        ):
            assert http.get(path).status_code == 200, path
        for page, target in (
            ("/", "/"),
            ("/duplicates?max_distance=0.01", "/duplicates?max_distance=0.01"),
            ("/docs", "/docs"),
        ):
            answer = http.get(page)
            assert answer.status_code == 303, page
            assert answer.headers["location"] == "/login?next=" + quote(target, safe="")
        assert http.post("/").status_code == 401  # not a page load: no redirect


# ---- signing in ---------------------------------------------------------------------------


def sign_in(http: httpx.Client, key: str, target: str = "/", **kwargs) -> httpx.Response:
    return http.post("/login", data={"key": key, "next": target}, **kwargs)


def test_sign_in_sets_a_strict_cookie_that_reads_the_api_and_sign_out_forgets_it(
    secure_web, pki, web_root
):
    with no_key_logged(secure_web, pki), client(secure_web, pki) as http:
        answer = sign_in(http, pki.keys["read"], "/duplicates?max_distance=0.01")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/duplicates?max_distance=0.01"
        [header] = answer.headers.get_list("set-cookie")
        cookie = SimpleCookie(header)[KEY_COOKIE]
        attributes = {part.strip().split("=")[0].lower() for part in header.split(";")[1:]}
        assert attributes == {"httponly", "max-age", "path", "samesite", "secure"}  # no Domain
        assert cookie["path"] == "/" and cookie["samesite"].lower() == "strict"
        assert cookie["secure"] and cookie["httponly"]
        assert int(cookie["max-age"]) == LOGIN_SECONDS
        assert answer.headers["cache-control"] == "no-store"
        http.cookies.set(KEY_COOKIE, cookie.value)  # as the browser keeps it
        assert http.get("/api/stats").json()["count"] == 44
        key = str(web_root / "photos" / "chelsea.jpg")
        assert http.get("/api/thumbnail", params={"key": key}).status_code == 200  # <img src>
        assert http.get("/").status_code == 200
        assert http.get("/api/limits").json()["api_keys"] is True
        # Same site but another host (a sibling subdomain's <img src> or form): the API is
        # refused there (imagesim.web.origin); typed addresses and this page's own requests
        # pass.
        for site, status in (("same-site", 403), ("cross-site", 403), ("same-origin", 200)):
            answer = http.get("/api/stats", headers={"Sec-Fetch-Site": site})
            assert answer.status_code == status, site
        assert http.get("/", headers={"Sec-Fetch-Site": "none"}).status_code == 200
        elsewhere = http.get("/", headers={"Sec-Fetch-Site": "same-site"})
        assert elsewhere.status_code == 303 and elsewhere.headers["location"].startswith("/login")
        gone = http.post("/logout")
        assert gone.status_code == 303 and gone.headers["location"] == "/login"
        cleared = SimpleCookie(gone.headers["set-cookie"])[KEY_COOKIE]
        assert cleared.value in ("", '""') and int(cleared["max-age"]) == 0


@pytest.mark.parametrize(
    "key, failed",
    [(WRONG_KEY, "key"), ("", "key"), ("x" * 2000, "key"), ("write", "role"), ("admin", "role")],
)
def test_sign_in_takes_only_read_keys(secure_web, pki, key, failed):
    with no_key_logged(secure_web, pki):
        key = pki.keys.get(key, key)
        with client(secure_web, pki) as http:
            answer = sign_in(http, key, "/duplicates")
            assert answer.status_code == 303
            assert answer.headers["location"] == f"/login?failed={failed}&next=%2Fduplicates"
            assert "set-cookie" not in answer.headers


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "/\t/evil.example",
        "/%0d%0aSet-Cookie:x=y",
        "/caf\u00e9",
        "/login?next=//evil.example",
        "/" + "a" * 3000,
        "",
    ],
)
def test_after_sign_in_only_paths_on_this_server(secure_web, pki, target):
    with client(secure_web, pki) as http:
        answer = sign_in(http, pki.keys["read"], target)
        expected = target if target == "/%0d%0aSet-Cookie:x=y" else "/"  # encoded: harmless
        assert answer.status_code == 303 and answer.headers["location"] == expected
        assert len(answer.headers.get_list("set-cookie")) == 1


def test_sign_in_refuses_other_sites_and_oversized_or_slow_forms(secure_web, pki):
    read = pki.keys["read"]
    with client(secure_web, pki) as http:
        for site in ("cross-site", "same-site"):
            answer = sign_in(http, read, headers={"Sec-Fetch-Site": site})
            assert answer.status_code == 403 and error_of(answer)["reason"] == "CROSS_SITE"
            assert "set-cookie" not in answer.headers
            assert http.post("/logout", headers={"Sec-Fetch-Site": site}).status_code == 403
        same = sign_in(http, read, headers={"Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 303 and same.headers["set-cookie"]
        big = http.post("/login", data={"key": read, "pad": "x" * 5000})
        assert big.status_code == 413 and "set-cookie" not in big.headers
        claimed = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 999999999\r\n\r\n"
        assert raw_request(secure_web, pki, claimed).startswith(b"HTTP/1.1 413 ")
        chunk = b"key=" + b"x" * 8000  # no length to check first: counted as it arrives
        chunked = (
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + f"{len(chunk):x}\r\n".encode()
            + chunk
            + b"\r\n"
        )
        assert raw_request(secure_web, pki, chunked).startswith(b"HTTP/1.1 413 ")
        # A form that never finishes arriving is given up on after FORM_SECONDS.
        started = time.monotonic()
        trickle = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\nkey"
        assert raw_request(secure_web, pki, trickle).startswith(b"HTTP/1.1 408 ")
        assert FORM_SECONDS <= time.monotonic() - started < FORM_SECONDS + 10  # noisy machine
        fields = "&".join(f"f{i}=1" for i in range(20))
        assert http.post("/login", content=fields.encode()).status_code == 400


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "https://127.0.0.1:1", "http://{own}"]
)
def test_sign_in_refuses_another_origin_when_the_browser_sends_no_fetch_metadata(
    secure_web, pki, origin
):
    """Browsers without Sec-Fetch-Site still send Origin on a form post: another site's
    page (or a sandboxed one: null) cannot sign the browser in with the attacker's key."""
    own = secure_web.url.removeprefix("https://")
    with no_key_logged(secure_web, pki), client(secure_web, pki) as http:
        answer = sign_in(http, pki.keys["read"], headers={"Origin": origin.format(own=own)})
        assert answer.status_code == 403, answer.text
        error = error_of(answer)
        assert error["reason"] == "CROSS_SITE" and error["code"] == "PERMISSION_DENIED"
        assert "set-cookie" not in answer.headers
        assert http.post("/logout", headers={"Origin": origin.format(own=own)}).status_code == 403
        signed_in = sign_in(http, pki.keys["read"], headers={"Origin": secure_web.url})
        assert signed_in.status_code == 303 and signed_in.headers["set-cookie"]


def test_a_key_without_the_role_a_route_needs_is_403_naming_the_role(pki):
    """Every route of the web server needs `read`, which every key has, so no route answers
    403 today; the middleware's rule for a route needing more, on a real ASGI stack."""

    async def ok(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    app = ApiKeyAuth(ok, KeyFile(pki.keys_file), needed=lambda path: Role.WRITE)

    async def call(key: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as http:
            return await http.post("/api/x", headers={"Authorization": f"Bearer {key}"})

    denied = asyncio.run(call(pki.keys["read"]))
    assert denied.status_code == 403
    error = error_of(denied)
    assert error["reason"] == "ROLE_REQUIRED" and error["code"] == "PERMISSION_DENIED"
    assert error["message"] == "/api/x needs the 'write' role; this key has 'read'"
    assert 'error="insufficient_scope", scope="write"' in denied.headers["www-authenticate"]
    for role in ("write", "admin"):
        assert asyncio.run(call(pki.keys[role])).status_code == 200
    assert asyncio.run(call(WRONG_KEY)).status_code == 401


# ---- other sites' pages -------------------------------------------------------------------


def test_a_keyless_server_does_no_work_for_other_sites(web, web_root, held_out_cat):
    """Any page the local user visits could otherwise make their browser start embeddings
    and whole-collection duplicate searches on the default (keyless, loopback) server."""
    host, port = urlsplit(web.url).hostname, urlsplit(web.url).port
    foreign = [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port of this host is another program
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": f"http://{host}:{port + 1}"},
        {"Origin": f"https://{host}:{port}"},
        {"Sec-Fetch-Site": "same-origin", "Origin": "https://evil.example"},
    ]
    own = [
        {"Sec-Fetch-Site": "same-origin", "Origin": web.url},  # the page's own requests
        {"Sec-Fetch-Site": "none"},  # an address typed in
        {},  # a program
    ]
    calls = [
        c for c in api_calls(web_root, held_out_cat) if c[1] != "/openapi.json"
    ]  # search, similar, duplicates, item, thumbnail, stats, limits, outliers, review
    with httpx.Client(base_url=web.url, timeout=60) as http:
        for headers in foreign:
            for method, path, kwargs in calls:
                answer = http.request(method, path, headers=headers, **kwargs)
                assert answer.status_code == 403, (headers, path, answer.text[:300])
                error = error_of(answer)
                assert error["reason"] == "CROSS_SITE" and error["code"] == "PERMISSION_DENIED"
                assert unquote(path) in error["message"]
        for headers in own:
            for method, path, kwargs in calls:
                answer = http.request(method, path, headers=headers, **kwargs)
                assert answer.status_code in (200, 202), (headers, path, answer.text[:300])
        # A link from another site still opens the pages.
        for page in ("/", "/duplicates"):
            assert http.get(page, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_a_key_put_in_the_address_is_not_logged(secure_web, pki):
    """The server never reads a key from the query string, but the access log would keep it:
    only a caller whose key was accepted has its query string logged."""
    secret = "secret-" + uuid.uuid4().hex
    start = len(secure_web.log_text())
    with client(secure_web, pki) as http:
        assert http.get("/api/stats", params={"key": secret}).status_code == 401
        cross = {"Sec-Fetch-Site": "cross-site"}
        assert http.get("/api/stats", params={"key": secret}, headers=cross).status_code == 403
        page = http.get("/", params={"api_key": secret})
        assert page.status_code == 303 and secret in page.headers["location"]
        assert http.get(page.headers["location"]).status_code == 200  # the sign-in page
    with client(secure_web, pki, pki.keys["read"]) as http:
        assert http.get("/api/stats", params={"k": "7"}).status_code == 200
    text = secure_web.log_text()[start:]
    assert secret not in text
    assert '"GET /api/stats?... HTTP/1.1" 401' in text
    assert '"GET /login?... HTTP/1.1" 200' in text
    assert '"GET /api/stats?k=7 HTTP/1.1" 200' in text  # an accepted caller's: all of it


# ---- TLS ----------------------------------------------------------------------------------


def test_plaintext_and_untrusting_clients_fail_cleanly(secure_web, pki):
    plain = secure_web.url.replace("https://", "http://")
    with pytest.raises(httpx.TransportError):
        httpx.get(plain + "/healthz", timeout=30)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(
            secure_web.url + "/healthz",
            verify=ssl.create_default_context(cafile=str(pki.other_ca)),
            timeout=30,
        )
    assert httpx.get(secure_web.url + "/healthz", verify=tls_client(pki)).status_code == 200
    assert secure_web.process.poll() is None
    assert "Traceback" not in secure_web.log_text()


@pytest.fixture
def mutual_web(web_collection, web_root, pki, tmp_path) -> Iterator[WebProcess]:
    server = start_secure_web(
        tmp_path / "web.log", web_collection, web_root, pki, "--tls-client-ca", str(pki.ca)
    )
    yield server
    server.stop()


def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(mutual_web, pki):
    stranger = tls_client(pki)
    stranger.load_cert_chain(pki.stranger.cert, pki.stranger.key)
    for context in (tls_client(pki), stranger):
        with pytest.raises(httpx.TransportError):
            httpx.get(mutual_web.url + "/healthz", verify=context, timeout=30).raise_for_status()
    with client(mutual_web, pki, verify=tls_client(pki, client_cert=True)) as http:
        assert http.get("/healthz").status_code == 200
        assert http.get("/api/stats").status_code == 401  # the certificate is not a key
        read = {"Authorization": f"Bearer {pki.keys['read']}"}
        assert http.get("/api/stats", headers=read).json()["count"] == 44


def test_renewed_certificate_files_apply_without_a_restart(web_collection, web_root, pki, tmp_path):
    live = tmp_path / "live"
    live.mkdir()
    (live / "server.crt").write_bytes(pki.server.cert.read_bytes())
    (live / "server.key").write_bytes(pki.server.key.read_bytes())
    server = WebProcess(
        tmp_path / "web.log", *web_collection, web_root,
        "--tls-cert", str(live / "server.crt"), "--tls-key", str(live / "server.key"),
        tls=tls_client(pki),
    )  # fmt: skip
    try:
        server.wait_ready()
        renewed = CertificateAuthority(tmp_path / "new-ca", "the new CA").issue("s", "localhost")
        for name, source in (("server.key", renewed.key), ("server.crt", renewed.cert)):
            (live / f".{name}").write_bytes(source.read_bytes())
            (live / f".{name}").replace(live / name)
        new_ca = ssl.create_default_context(cafile=str(tmp_path / "new-ca" / "ca.crt"))
        assert httpx.get(server.url + "/healthz", verify=new_ca).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(server.url + "/healthz", verify=tls_client(pki))
        # A broken set (a key that is not the certificate's) keeps the current certificate.
        (live / "server.key").write_bytes(pki.server.key.read_bytes())
        assert httpx.get(server.url + "/healthz", verify=new_ca).status_code == 200
        assert "keeping the current TLS certificates" in server.log_text()
        assert server.process.poll() is None
    finally:
        server.stop()


# ---- refusing to start --------------------------------------------------------------------


def refused_start(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Runs imagesim-web, which must refuse to start (exit 2, the usage error)."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    return result


@pytest.mark.parametrize(
    "extra, missing",
    [
        ([], "without TLS (--tls-cert/--tls-key) and caller authentication"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}"], "without caller authentication"),
        (["--api-keys", "{keys}"], "without TLS (--tls-cert/--tls-key): "),
    ],
)
def test_a_non_loopback_bind_without_tls_and_keys_refuses_to_start(pki, tmp_path, extra, missing):
    extra = [a.format(cert=pki.server.cert, key=pki.server.key, keys=pki.keys_file) for a in extra]
    port_file = tmp_path / "port.json"
    command = [
        sys.executable, "-m", "imagesim.web.main", "--host", "0.0.0.0", "--port", "0",
        "--port-file", str(port_file), "--images-root", str(tmp_path), *extra,
    ]  # fmt: skip
    result = refused_start(command)
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("imagesim-web: error: refusing to serve on 0.0.0.0")
    assert missing in line and "--insecure" in line
    assert not port_file.exists()  # refused before binding


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tls-cert", "{cert}"], "TLS needs both --tls-cert and --tls-key"),
        (["--tls-client-ca", "{cert}"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--api-keys", "{missing}"], "cannot read key file"),
        (["--tls-cert", "{cert}", "--tls-key", "{cert}"], "cannot use the TLS files"),
    ],
)
def test_unusable_security_settings_refuse_to_start(pki, tmp_path, args, message):
    args = [a.format(cert=pki.server.cert, missing=tmp_path / "nope") for a in args]
    command = [
        sys.executable, "-m", "imagesim.web.main", "--port", "0",
        "--images-root", str(tmp_path), *args,
    ]  # fmt: skip
    assert message in refused_start(command).stderr.strip().splitlines()[-1]


# ---- metrics ------------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template_and_status(secure_web, pki, web_root):
    port = secure_web.metrics_port
    assert port
    route = "http_server_request_duration_seconds_count"

    def count(page, path: str, status: str) -> float:
        found = [
            s.value
            for s in page.samples
            if s.name == route
            and s.labels["http_route"] == path
            and s.labels["http_response_status_code"] == status
        ]
        return sum(found)

    before = scrape(port, pki.keys["read"], pki.ca)
    keys = [str(web_root / "photos" / name) for name in ("chelsea.jpg", "coffee.jpg")]
    with client(secure_web, pki, pki.keys["read"]) as http:
        for key in keys:
            assert http.get("/api/items/" + quote(key, safe="")).status_code == 200
        assert http.get("/api/nothing-here").status_code == 404
        assert http.get("/static/common.js").status_code == 200
        assert http.get("/static/no-such-file.js").status_code == 404
    with client(secure_web, pki) as anonymous:
        assert anonymous.get("/api/stats").status_code == 401
        assert anonymous.get("/random/path/12345").status_code == 401
    after = scrape(port, pki.keys["read"], pki.ca)
    items = "/api/items/{key:path}"
    assert count(after, items, "200") - count(before, items, "200") == 2
    assert count(after, "/api/stats", "401") - count(before, "/api/stats", "401") == 1
    assert count(after, "unmatched", "401") - count(before, "unmatched", "401") == 1
    assert count(after, "unmatched", "404") - count(before, "unmatched", "404") == 1
    # mounted static files under their mount (their scope is rewritten while they run)
    assert count(after, "/static", "200") - count(before, "/static", "200") == 1
    assert count(after, "/static", "404") - count(before, "/static", "404") == 1
    # Route templates only: no raw path, key or query reaches a label.
    routes = {s.labels["http_route"] for s in after.samples if s.name == route}
    assert routes <= {
        items,
        "/api/stats",
        "/api/limits",
        "/api/search",
        "/api/similar",
        "/api/duplicates",
        "/api/thumbnail",
        "/api/outliers",
        "/api/review/config",
        "/api/review/plan",
        "/api/review/apply",
        "/api/review/manifest",
        "/outliers",
        "/healthz",
        "/readyz",
        "/login",
        "/logout",
        "/",
        "/duplicates",
        "/docs",
        "/openapi.json",
        "/favicon.ico",
        "/static",
        "/static-offline-docs",
        "unmatched",
    }, routes
    assert after.value("http_server_active_requests") >= 0
    assert after.value("process_resident_memory_bytes") > 0
    # The metrics port has the web server's TLS and keys.
    with pytest.raises(httpx.HTTPStatusError):
        httpx.get(f"https://127.0.0.1:{port}/metrics", verify=tls_client(pki)).raise_for_status()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
