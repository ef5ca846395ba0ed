"""The HTTP/JSON API of a real imagesim-web process (real Embedder and shards behind it):
answers, status codes and reasons, and every limit a hostile caller would push on."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path
from urllib.parse import quote, urlsplit

import httpx
import pytest
from PIL import Image

from tests.support.cli import run_cli
from tests.support.hostile import png_claiming
from tests.test_metrics import scrape

CHELSEA = {"chelsea.jpg", "chelsea_crop.jpg", "chelsea_half.jpg", "chelsea_mirror.jpg"}


def name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def jpeg(size: tuple[int, int], seed: int = 0, quality: int = 95) -> bytes:
    """A noisy JPEG (noise does not compress: the file is large for its pixels)."""
    import numpy as np

    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture
def http(web):
    with httpx.Client(base_url=web.url, timeout=60) as client:
        yield client


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "code", "reason", "title", "message"}
    assert error["status"] == response.status_code and error["title"] and error["message"]
    assert "Traceback" not in response.text
    return error


# ---- answers ------------------------------------------------------------------------------


def test_an_uploaded_photo_finds_its_near_duplicates_first(http, held_out_cat):
    answer = http.post(
        "/api/search",
        files={"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")},
        data={"k": "6"},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["query"] == "cat.jpg" and body["k"] == 6 and body["missing_shards"] == []
    hits = body["neighbors"]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5, 6]
    assert {name(h["key"]) for h in hits[:4]} == CHELSEA
    distances = [h["distance"] for h in hits]
    assert distances == sorted(distances)
    first = hits[0]
    assert first["thumbnail"] == "/api/thumbnail?key=" + quote(first["key"], safe="")
    assert first["similar"] == "/?key=" + quote(first["key"], safe="")
    picture = http.get(first["thumbnail"])
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
    assert max(Image.open(io.BytesIO(picture.content)).size) == 256


def test_search_parameters_threshold_filter_and_metadata(http, held_out_cat, web_root):
    upload = {"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")}
    everything = http.post("/api/search", files=upload, data={"k": "10"}).json()["neighbors"]
    cut = everything[3]["distance"]
    near = http.post("/api/search", files=upload, data={"k": "10", "max_distance": str(cut)})
    assert [h["key"] for h in near.json()["neighbors"]] == [h["key"] for h in everything[:4]]
    assert near.json()["max_distance"] == cut
    filtered = http.post(
        "/api/search",
        files=upload,
        data={"k": "10", "where": ["width=225", "album=samples"], "metadata": "true"},
    ).json()["neighbors"]
    assert [name(h["key"]) for h in filtered] == ["chelsea_half.jpg"]
    assert filtered[0]["metadata"]["album"] == "samples"
    assert filtered[0]["metadata"]["width"] == "225"


def test_more_like_this_items_and_stats(http, web_root):
    key = str(web_root / "photos" / "chelsea.jpg")
    similar = http.get("/api/similar", params={"key": key, "k": 3})
    assert similar.status_code == 200
    body = similar.json()
    assert body["query"] == key
    assert {name(h["key"]) for h in body["neighbors"]} == CHELSEA - {"chelsea.jpg"}
    item = http.get("/api/items/" + quote(key, safe=""))
    assert item.status_code == 200
    assert item.json()["key"] == key and item.json()["dimension"] == 2048
    assert item.json()["metadata"]["width"] == "451"
    assert item.json()["metadata"]["height"] == "300"
    stats = http.get("/api/stats").json()
    assert stats["count"] == 44 and len(stats["shards"]) == 2
    assert sum(s["count"] for s in stats["shards"]) == 44
    assert {s["metric"] for s in stats["shards"]} == {"angular"}
    for path in ("/api/items/nope.jpg", "/api/similar?key=nope.jpg"):
        missing = http.get(path)
        assert missing.status_code == 404 and error_of(missing)["reason"] == "KEY_NOT_FOUND"
    limits = http.get("/api/limits").json()
    assert limits["from_embedder"] is True  # read from the embedder's Info
    assert limits["max_image_bytes"] == 32 * 1024 * 1024
    assert limits["max_image_pixels"] == 80_000_000
    assert limits["max_decoded_bytes"] == 128 * 1024 * 1024


def test_stats_answer_as_the_cli_does(http, web_collection):
    """/api/stats is `imagesim stats --json`'s answer; `count` is its deprecated alias of
    total.count (one release)."""
    _, shards = web_collection
    cli = json.loads(run_cli("stats", "--json", "--shards", shards).stdout)
    stats = http.get("/api/stats").json()
    assert stats["total"] == cli["total"] and stats["total"]["count"] == 44
    assert stats["count"] == stats["total"]["count"]
    assert sorted(stats["shards"], key=lambda s: s["shard_id"]) == sorted(
        cli["shards"], key=lambda s: s["shard_id"]
    )


def test_duplicate_groups_are_paged_largest_first(http):
    first = http.get("/api/duplicates", params={"max_distance": 0.04, "page_size": 4})
    assert first.status_code == 200
    body = first.json()
    assert body["status"] == "done" and body["items"] == 44
    assert body["groups_total"] == 11 and body["pages"] == 3 and len(body["groups"]) == 4
    sizes = [g["size"] for g in body["groups"]]
    assert sizes == sorted(sizes, reverse=True)
    cat = next(g for g in body["groups"] if "chelsea.jpg" in {name(m["key"]) for m in g["members"]})
    assert {name(m["key"]) for m in cat["members"]} == CHELSEA
    last = http.get(
        "/api/duplicates", params={"max_distance": 0.04, "page_size": 4, "page": 3}
    ).json()
    assert len(last["groups"]) == 3 and last["page"] == 3
    seen = {m["key"] for page in (body, last) for g in page["groups"] for m in g["members"]}
    assert len(seen) == sum(g["size"] for page in (body, last) for g in page["groups"])
    few = http.get("/api/duplicates", params={"max_distance": 0.04, "members": 2}).json()
    assert all(len(g["members"]) == min(2, g["size"]) for g in few["groups"])
    for bad in ({"max_distance": -1}, {"page_size": 101}, {"members": 0}, {"wait": 31}):
        refused = http.get("/api/duplicates", params=bad)
        assert refused.status_code == 422 and error_of(refused)["reason"] == "INVALID_REQUEST"


# ---- errors -------------------------------------------------------------------------------


def test_uploads_that_are_not_images_get_their_reason(http):
    whole = jpeg((64, 64))
    cases = {
        "notes.txt": (b"just some text", 415, "IMAGE_UNDECODABLE"),
        "empty.jpg": (b"", 400, "IMAGE_EMPTY"),
        "bomb.png": (png_claiming(20_000, 5_000), 413, "IMAGE_TOO_MANY_PIXELS"),
        # Few enough pixels, but 160 MB of them decoded: refused from the header.
        "deep.png": (png_claiming(8944, 8944, bits=16), 413, "IMAGE_TOO_LARGE"),
        # A good header with its data cut: only the embedder finds out.
        "truncated.jpg": (whole[: len(whole) // 2], 415, "IMAGE_UNDECODABLE"),
    }
    for filename, (data, status, reason) in cases.items():
        answer = http.post("/api/search", files={"image": (filename, data, "image/jpeg")})
        assert answer.status_code == status, (filename, answer.text)
        assert error_of(answer)["reason"] == reason, filename


def large_photo_jpeg(size: tuple[int, int]) -> bytes:
    """A smooth RGB JPEG of `size` pixels (gradients compress: 72 Mpx make ~1.4 MB)."""
    across = Image.linear_gradient("L").resize(size)
    around = Image.radial_gradient("L").resize(size)
    image = Image.merge("RGB", (across, around, across.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def test_uploads_are_judged_by_the_embedders_own_decode_rule(http, web_collection):
    """A 9000 x 8000 JPEG (288 MB of pixels at full size) is decoded at 1/8 by the Embedder,
    so it is searchable here as it is embeddable over gRPC; images whose decode would take
    too much memory are still refused from their header."""
    from imagesim.client.embedder_client import EmbedderClient

    photo = large_photo_jpeg((9000, 8000))
    with EmbedderClient(web_collection[0], 60) as embedder:
        assert embedder.embed(photo).shape == (2048,)
    upload = {"image": ("large.jpg", photo, "image/jpeg")}
    answer = http.post("/api/search", files=upload, data={"k": "3"})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["neighbors"]) == 3
    for data in (png_claiming(8944, 8944, bits=16), png_claiming(6000, 6000, rgb=True)):
        refused = http.post("/api/search", files={"image": ("deep.png", data, "image/png")})
        assert refused.status_code == 413 and error_of(refused)["reason"] == "IMAGE_TOO_LARGE"
        assert "bytes decoded" in error_of(refused)["message"]


def test_bad_parameters_are_422_and_unknown_routes_404(http, held_out_cat):
    upload = {"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")}
    for data in (
        {"k": "0"},
        {"k": "101"},
        {"k": "ten"},
        {"max_distance": "-0.5"},
        {"max_distance": "nan"},
        {"where": "no equals sign"},
        {"where": [f"k{i}=v" for i in range(17)]},
    ):
        answer = http.post("/api/search", files=upload, data=data)
        assert answer.status_code == 422, (data, answer.text)
        assert error_of(answer)["reason"] == "INVALID_REQUEST"
    assert http.post("/api/search", data={"k": "3"}).status_code == 422  # no image
    assert http.get("/api/similar", params={"key": "x" * 5000}).status_code == 422
    assert http.get("/api/similar").status_code == 422
    unknown = http.get("/api/nothing-here")
    assert unknown.status_code == 404 and error_of(unknown)["reason"] == "NO_SUCH_ROUTE"
    wrong = http.post("/api/stats")
    assert wrong.status_code == 405 and error_of(wrong)["reason"] == "METHOD_NOT_ALLOWED"


def test_a_shard_that_is_down_is_named_and_partial_results_are_offered(
    stack_with_a_shard_to_kill, held_out_cat
):
    web, shard = stack_with_a_shard_to_kill
    with httpx.Client(base_url=web.url, timeout=60) as http:
        upload = {"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")}
        assert http.post("/api/search", files=upload).status_code == 200
        assert http.get("/readyz").status_code == 200
        shard.stop()
        down = http.post("/api/search", files=upload)
        assert down.status_code == 503 and down.headers["retry-after"]
        error = error_of(down)
        assert error["code"] == "UNAVAILABLE" and shard.address in error["message"]
        assert error["title"] == "A search service is down or busy."
        partial = http.post("/api/search", files=upload, data={"allow_partial": "true"})
        assert partial.status_code == 200 and partial.json()["missing_shards"] == [shard.address]
        assert partial.json()["neighbors"]
        deadline = time.monotonic() + 10  # readiness is cached for 2 s
        while (ready := http.get("/readyz")).status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert ready.json()["status"] == "unavailable" and ready.json()["embedder"] == "ok"
        assert ready.json()["shards"][shard.address] != "ok"
        assert http.get("/healthz").status_code == 200  # the web server itself is alive


# ---- thumbnails: only collection keys, only files under the root ----------------------------


@pytest.fixture(scope="module")
def hostile(embedder_server, web_root, tmp_path_factory):
    """A shard holding keys that point outside the images root in every way, plus a few that
    are fine, and a web server on it: (web, root, outside file)."""
    import os

    import numpy as np

    from imagesim.client.collection import Collection
    from imagesim.types import ItemToAdd
    from tests.support.launch import start_index
    from tests.support.web import start_web

    work = tmp_path_factory.mktemp("hostile")
    root = work / "root"
    (root / "sub").mkdir(parents=True)
    outside = work / "outside" / "secret.jpg"
    outside.parent.mkdir()
    Image.open(web_root / "photos" / "coffee.jpg").save(outside)
    Image.open(web_root / "photos" / "rocket.jpg").save(root / "sub" / "rocket.jpg")
    (root / "link_out.jpg").symlink_to(outside)
    (root / "sub" / "dir_link").symlink_to(outside.parent, target_is_directory=True)
    (root / "link_in.jpg").symlink_to(root / "sub" / "rocket.jpg")
    os.mkfifo(root / "fifo.jpg")
    (root / "folder.jpg").mkdir()
    (root / "bomb.png").write_bytes(png_claiming(20_000, 5_000))
    (root / "deep.png").write_bytes(png_claiming(8944, 8944, bits=16))
    (root / "not_indexed.jpg").write_bytes((root / "sub" / "rocket.jpg").read_bytes())
    keys = [
        "../outside/secret.jpg",
        str(outside),
        "link_out.jpg",
        "sub/dir_link/secret.jpg",
        "sub/../sub/rocket.jpg",
        "/etc/passwd",
        "fifo.jpg",
        "folder.jpg",
        "bomb.png",
        "deep.png",
        "gone.jpg",
        "sub/rocket.jpg",
        str(root / "sub" / "rocket.jpg"),
        "link_in.jpg",
    ]
    shard = start_index(work / "s.log", work / "s", 8)
    rng = np.random.default_rng(0)
    with Collection([shard.address]) as collection:
        collection.add([ItemToAdd(k, rng.random(8, dtype=np.float32) + 0.1) for k in keys])
    web = start_web(work / "web.log", embedder_server.address, shard.address, root)
    yield web, root, outside
    web.stop()
    shard.stop()


def thumbnail(client: httpx.Client, key: str) -> httpx.Response:
    return client.get("/api/thumbnail", params={"key": key})


def test_keys_leading_out_of_the_root_are_refused(hostile):
    web, _, outside = hostile
    with httpx.Client(base_url=web.url, timeout=60) as http:
        for key in (
            "../outside/secret.jpg",  # traversal
            str(outside),  # absolute, elsewhere
            "/etc/passwd",
            "link_out.jpg",  # a symlink in the root to a file outside
            "sub/dir_link/secret.jpg",  # a symlinked folder leading out
            "sub/../sub/rocket.jpg",  # `..` is refused even where it would stay inside
        ):
            answer = thumbnail(http, key)
            assert answer.status_code == 403, (key, answer.text)
            assert error_of(answer)["reason"] == "OUTSIDE_IMAGES_ROOT", key
            assert answer.headers["content-type"] == "application/json"
        # Encoded in the raw URL the same way a browser would not: still the same key.
        raw = http.get("/api/thumbnail?key=%2E%2E%2Foutside%2Fsecret%2Ejpg")
        assert raw.status_code == 403
        # A file in the root that is not in the collection is not served either.
        assert thumbnail(http, "not_indexed.jpg").status_code == 404
        assert error_of(thumbnail(http, "not_indexed.jpg"))["reason"] == "KEY_NOT_FOUND"
        # Static files cannot be escaped from.
        for path in ("/static/..%2F..%2Fsettings.py", "/static/../app.py", "/static/%2e%2e/x"):
            assert http.get(path).status_code == 404, path


def test_special_files_missing_files_and_bombs_in_the_root(hostile):
    web, root, _ = hostile
    with httpx.Client(base_url=web.url, timeout=60) as http:
        for key in ("fifo.jpg", "folder.jpg", "gone.jpg"):  # a FIFO must not hang a worker
            answer = thumbnail(http, key)
            assert answer.status_code == 404, key
            assert error_of(answer)["reason"] == "IMAGE_FILE_MISSING", key
        bomb = thumbnail(http, "bomb.png")
        assert bomb.status_code == 413 and error_of(bomb)["reason"] == "IMAGE_TOO_MANY_PIXELS"
        deep = thumbnail(http, "deep.png")  # 80 Mpx of 16 bits: too much memory to decode
        assert deep.status_code == 413 and error_of(deep)["reason"] == "IMAGE_TOO_LARGE"
        served = {}
        for key in ("sub/rocket.jpg", str(root / "sub" / "rocket.jpg"), "link_in.jpg"):
            answer = thumbnail(http, key)
            assert answer.status_code == 200, key
            assert answer.headers["content-type"] == "image/jpeg"
            served[key] = answer
        # One file behind three keys: one thumbnail, one ETag; a current copy gets 304.
        assert len({a.headers["etag"] for a in served.values()}) == 1
        again = http.get(
            "/api/thumbnail",
            params={"key": "sub/rocket.jpg"},
            headers={"If-None-Match": served["sub/rocket.jpg"].headers["etag"]},
        )
        assert again.status_code == 304 and again.content == b""


# ---- request limits -----------------------------------------------------------------------


def multipart(image: bytes, boundary: str = "imagesimboundary") -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    return sock


def head(url: str, length: int | None) -> bytes:
    host = urlsplit(url).netloc
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /api/search HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: multipart/form-data; boundary=imagesimboundary\r\n"
        f"{framing}\r\n\r\n"
    ).encode()


def response_of(sock: socket.socket) -> tuple[int, bytes]:
    """Read until the server closes (or a whole small answer has come): (status, raw)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        if b"\r\n\r\n" in data:
            headers, _, body = data.partition(b"\r\n\r\n")
            for line in headers.split(b"\r\n"):
                if line.lower().startswith(b"content-length:") and len(body) >= int(
                    line.split(b":")[1]
                ):
                    return int(data.split(b" ", 2)[1]), data
    return int(data.split(b" ", 2)[1]), data


def test_upload_size_limit_before_and_while_the_body_arrives(web_small, held_out_cat):
    with httpx.Client(base_url=web_small.url, timeout=60) as http:
        limit = http.get("/api/limits").json()["max_image_bytes"]
        assert limit == 256 * 1024  # --max-upload-mb 0.25 lowers the embedder's 32 MiB
        big = jpeg((600, 600))
        assert len(big) > limit + 64 * 1024
        answer = http.post("/api/search", files={"image": ("big.jpg", big, "image/jpeg")})
        assert answer.status_code == 413 and error_of(answer)["reason"] == "IMAGE_TOO_LARGE"
        ok = http.post(
            "/api/search", files={"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")}
        )
        assert ok.status_code == 200
    # A huge Content-Length is refused before any body is sent.
    with connect(web_small.url) as sock:
        sock.sendall(head(web_small.url, 10**12))
        status, raw = response_of(sock)
        assert status == 413 and b"IMAGE_TOO_LARGE" in raw
    # Chunked: no length to check up front; refused once the body grows over the limit.
    with connect(web_small.url) as sock:
        sock.sendall(head(web_small.url, None))
        body = multipart(big)
        for start in range(0, len(body), 32 * 1024):
            chunk = body[start : start + 32 * 1024]
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break  # the server answered and closed
        status, raw = response_of(sock)
        assert status == 413 and b"IMAGE_TOO_LARGE" in raw


def handling(web, requests: int, timeout: float = 60) -> None:
    """Wait until `web` (started with --metrics-port) is handling `requests` requests."""
    deadline = time.monotonic() + timeout
    assert web.metrics_port
    while scrape(web.metrics_port).value("http_server_active_requests") < requests:
        assert time.monotonic() < deadline, f"the server never had {requests} requests at once"
        time.sleep(0.05)


def test_a_trickling_upload_gets_408_and_uploads_at_once_are_bounded(web_small, held_out_cat):
    body = multipart(held_out_cat.read_bytes())
    slow = [connect(web_small.url) for _ in range(2)]  # --max-uploads 2
    try:
        for sock in slow:
            sock.sendall(head(web_small.url, len(body)) + body[:100])
        handling(web_small, 2)
        # Both slots are taken: a third upload is turned away at once, not queued.
        with httpx.Client(base_url=web_small.url, timeout=60) as http:
            deadline = time.monotonic() + 4
            while True:
                third = http.post(
                    "/api/search",
                    files={"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")},
                )
                if third.status_code == 503 or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert third.status_code == 503 and third.headers["retry-after"]
            assert error_of(third)["reason"] == "TOO_MANY_UPLOADS"
            # The trickling uploads get 408 when --upload-timeout (5 s) runs out ...
            for sock in slow:
                status, raw = response_of(sock)
                assert status == 408 and b"UPLOAD_TOO_SLOW" in raw
            # ... which frees their slots.
            after = http.post(
                "/api/search", files={"image": ("cat.jpg", held_out_cat.read_bytes(), "image/jpeg")}
            )
            assert after.status_code == 200
    finally:
        for sock in slow:
            sock.close()


# ---- the server ---------------------------------------------------------------------------


def test_hosts_headers_docs_and_pages(http, web):
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json()["status"] == "ready"
    # Another Host (a DNS-rebinding page) is refused: the server is bound to loopback.
    assert http.get("/api/stats", headers={"Host": "evil.example"}).status_code == 400
    page = http.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    # No address of this server reaches another site; its own posts carry a real Origin.
    assert page.headers["referrer-policy"] == "same-origin"
    assert http.get("/duplicates").status_code == 200
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
    assert "cdn." not in docs.text  # served from the package: works offline
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert http.get(f"/static-offline-docs/{asset}").status_code == 200
    spec = http.get("/openapi.json").json()
    assert {
        "/api/search",
        "/api/similar",
        "/api/duplicates",
        "/api/items/{key}",
        "/api/thumbnail",
        "/api/stats",
        "/api/limits",
        "/healthz",
        "/readyz",
    } <= set(spec["paths"])
    upload = spec["paths"]["/api/search"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"413", "415", "503"} <= set(upload["responses"])


def test_sigterm_lets_an_upload_in_flight_finish_then_exits_cleanly(
    embedder_server, web_collection, web_root, held_out_cat, tmp_path: Path
):
    from tests.support.web import start_web

    embedder, shards = web_collection
    server = start_web(tmp_path / "web.log", embedder, shards, web_root, "--metrics-port", "0")
    body = multipart(held_out_cat.read_bytes())
    with connect(server.url) as sock:
        sock.sendall(head(server.url, len(body)) + body[:1000])
        handling(server, 1)  # the request is in flight (reading its body) ...
        server.process.terminate()  # ... when the server is told to stop
        time.sleep(0.5)
        sock.sendall(body[1000:])
        status, raw = response_of(sock)
    assert status == 200 and b"chelsea" in raw
    assert server.process.wait(30) == 0
    assert "stopped" in server.log_text()


def test_the_web_server_reaches_secured_shards_with_a_read_key(
    start_shard, pki, embedder_server, tmp_path: Path
):
    """Shards with TLS and API keys: the web server uses the client library's settings from
    the environment (IMAGESIM_TLS_CA, IMAGESIM_API_KEY); a read key is all it needs."""
    import numpy as np

    from imagesim.client.collection import Collection
    from imagesim.types import ItemToAdd
    from tests.support.web import WebProcess

    shard = start_shard(8, *pki.server_args(), security=pki.security())
    rng = np.random.default_rng(3)
    base = rng.random(8, dtype=np.float32) + 0.1
    items = [ItemToAdd("a.jpg", base), ItemToAdd("a_copy.jpg", base + 0.001)]
    items += [ItemToAdd(f"k{i}.jpg", rng.random(8, dtype=np.float32) + 0.1) for i in range(20)]
    with Collection([shard.address], security=pki.security("admin")) as admin:
        admin.add(items)  # the first write records the layout: admin
    servers = {}
    for name, key in (("read", pki.keys["read"]), ("none", "")):
        env = {"IMAGESIM_TLS_CA": str(pki.ca), "IMAGESIM_API_KEY": key}
        server = WebProcess(
            tmp_path / f"web-{name}.log", embedder_server.address, shard.address, tmp_path, env=env
        )
        server.wait_ready()
        servers[name] = server
    try:
        with httpx.Client(base_url=servers["read"].url, timeout=60) as http:
            assert http.get("/api/stats").json()["count"] == 22
            similar = http.get("/api/similar", params={"key": "a.jpg", "k": 1}).json()
            assert [n["key"] for n in similar["neighbors"]] == ["a_copy.jpg"]
            groups = http.get("/api/duplicates", params={"max_distance": 0.01}).json()
            assert [[m["key"] for m in g["members"]] for g in groups["groups"]] == [
                ["a.jpg", "a_copy.jpg"]
            ]  # Scan is a read call too
        with httpx.Client(base_url=servers["none"].url, timeout=60) as http:
            refused = http.get("/api/stats")
            assert refused.status_code == 502  # the web server is misconfigured, not the caller
            assert error_of(refused)["reason"] == "UNAUTHENTICATED_CALLER"
    finally:
        for server in servers.values():
            server.stop()
