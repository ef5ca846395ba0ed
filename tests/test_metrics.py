"""Prometheus metrics scraped over HTTP(S) from real server processes, and the Grafana
dashboard checked against what the servers export."""

from __future__ import annotations

import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from imagesim.channel import ChannelSecurity
from imagesim.client.embedder_client import EmbedderClient
from imagesim.client.index_client import IndexClient
from imagesim.errors import InvalidArgument
from imagesim.params import SearchParams
from imagesim.types import ItemToAdd
from tests.support.web import WebProcess

DIMS = 8
DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "imagesim.json"


class Scrape:
    """One /metrics page: value of a sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
        self.names = {s.name for s in self.samples}

    def value(self, name: str, **labels: str) -> float:
        found = [
            s.value
            for s in self.samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        ]
        assert found, f"no sample {name}{labels}"
        return sum(found)


def scrape(port: int, key: str | None = None, ca: Path | None = None) -> Scrape:
    scheme = "https" if ca else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}/metrics")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    context = ssl.create_default_context(cafile=str(ca)) if ca else None
    with urllib.request.urlopen(request, timeout=30, context=context) as reply:
        return Scrape(reply.read().decode())


@pytest.fixture
def metered_shard(start_shard) -> Iterator:
    shard = start_shard(DIMS, "--metrics-port", "0", "--auto-build", "50", "--trees", "5")
    announced = json.loads(shard.port_file.read_text())  # what launch.py read
    # "ready" turns true just after health SERVING, which launch.py waited for
    assert isinstance(announced.pop("ready"), bool)
    assert announced == {
        "host": "127.0.0.1",
        "port": int(shard.address.rsplit(":", 1)[1]),
        "pid": shard.process.pid,
        "metrics_port": shard.metrics_port,
    }
    assert shard.metrics_port > 0
    yield shard


def exercise_shard(address: str) -> None:
    rng = np.random.default_rng(0)
    with IndexClient(address, security=ChannelSecurity()) as client:
        client.add([ItemToAdd(f"k{i}", rng.normal(size=DIMS)) for i in range(30)])
        client.build()
        client.search(np.ones(DIMS), SearchParams(k=3))
        client.remove(["k0"])
        with pytest.raises(InvalidArgument):
            client.search(np.ones(DIMS + 1), SearchParams(k=3))


def test_index_metrics_over_http(metered_shard):
    exercise_shard(metered_shard.address)
    page = scrape(metered_shard.metrics_port)
    index = {"grpc_service": "imagesim.v1.Index", "grpc_type": "unary_unary"}
    assert page.value("grpc_server_started_total", grpc_method="Add", **index) == 1
    assert page.value("grpc_server_handled_total", grpc_method="Search", grpc_code="OK") == 1
    assert (
        page.value("grpc_server_handled_total", grpc_method="Search", grpc_code="INVALID_ARGUMENT")
        == 1
    )
    assert page.value("grpc_server_handling_seconds_count", grpc_method="Build") == 1
    assert page.value("grpc_server_msg_received_total", grpc_method="Add") == 1
    assert page.value("imagesim_index_items") == 29
    assert page.value("imagesim_index_items_hidden") == 1
    assert page.value("imagesim_index_generation") == 1
    assert page.value("imagesim_index_bytes") > 0
    assert page.value("imagesim_index_build_seconds_count") == 1
    assert page.value("imagesim_index_search_seconds_count") == 1  # the bad one never searched
    assert page.value("imagesim_server_streams_max") == 4
    assert page.value("process_resident_memory_bytes") > 0


def test_a_background_build_is_observed_at_the_next_scrape(metered_shard):
    with IndexClient(metered_shard.address, security=ChannelSecurity()) as client:
        rng = np.random.default_rng(1)
        client.add([ItemToAdd(f"k{i}", rng.normal(size=DIMS)) for i in range(60)])  # > 50
    deadline = time.monotonic() + 120
    # The build is counted just after its generation goes live: wait for the count.
    port = metered_shard.metrics_port
    while (page := scrape(port)).value("imagesim_index_build_seconds_count") < 1:
        assert time.monotonic() < deadline, "the automatic build never finished"
        time.sleep(0.2)
    assert page.value("imagesim_index_build_seconds_count") == 1
    assert page.value("imagesim_index_generation") == 1
    assert page.value("grpc_server_handled_total", grpc_method="Add") == 1  # no Build RPC


def test_embedder_metrics_over_https_need_a_read_key(secure_embedder, pki, photos):
    port = secure_embedder.metrics_port
    images = [("ok", (photos / "real" / "coffee.jpg").read_bytes()), ("bad", b"not an image")]
    with EmbedderClient(secure_embedder.address, 60, pki.security("read")) as embedder:
        results = list(embedder.embed_stream(images))
        with pytest.raises(InvalidArgument) as bad:
            embedder.embed(b"not an image either")
    assert [r.error is None for r in results] == [True, False]
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(port, ca=pki.ca)
    assert refused.value.code == 401
    with pytest.raises(OSError):  # plaintext against the TLS port: reset or refused
        scrape(port, key=pki.keys["read"])
    page = scrape(port, key=pki.keys["read"], ca=pki.ca)
    assert page.value("imagesim_embedder_images_embedded_total") >= 1
    # labelled with the reason the caller got
    assert page.value("imagesim_embedder_images_rejected_total", reason=bad.value.reason) >= 2
    assert page.value("imagesim_embedder_images_in_flight") == 0
    assert page.value("imagesim_embedder_batch_size_count") >= 1
    assert page.value("imagesim_embedder_model_seconds_count") >= 1
    # fed from inside the core and the batcher
    assert page.value("imagesim_embedder_decode_seconds_count") >= 1
    assert page.value("imagesim_embedder_queue_wait_seconds_count") >= 1
    info = next(s for s in page.samples if s.name == "imagesim_embedder_model_info")
    assert info.labels["precision"] == "float32" and info.labels["weights"] == "none"
    assert page.value("grpc_server_started_total", grpc_method="EmbedStream") >= 1
    assert page.value("grpc_server_msg_received_total", grpc_method="EmbedStream") >= 2


METRIC_NAME = re.compile(r"\b((?:grpc_server|http_server|imagesim|process)_[a-z0-9_]+)\b")


@pytest.fixture
def metered_web(metered_shard, embedder_server, pki, tmp_path) -> Iterator[WebProcess]:
    """imagesim-web over the metered shard, with TLS, API keys and metrics, as deployed."""
    server = WebProcess(
        tmp_path / "web.log", embedder_server.address, metered_shard.address, tmp_path,
        *pki.server_args(), "--metrics-port", "0",
        tls=ssl.create_default_context(cafile=str(pki.ca)),
    )  # fmt: skip
    server.wait_ready()
    yield server
    server.stop()


def exercise_web(web: WebProcess, pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca))
    for path, key, status in (
        ("/api/stats", pki.keys["read"], 200),
        ("/api/items/k1", pki.keys["read"], 200),
        ("/api/items/nope", pki.keys["read"], 404),
        ("/api/stats", None, 401),
    ):
        request = urllib.request.Request(web.url + path)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=30, context=context) as reply:
                assert reply.status == status
        except urllib.error.HTTPError as error:
            assert error.code == status, path


def test_every_metric_the_dashboard_uses_is_exported(
    metered_shard, secure_embedder, metered_web, pki
):
    """The names the dashboard queries (panels and variables) against what a real shard, a
    real Embedder and a real imagesim-web export."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert len(used) > 25
    assert {"http_server_request_duration_seconds_count", "http_server_active_requests"} <= used
    exercise_shard(metered_shard.address)
    embedder = EmbedderClient(secure_embedder.address, 60, pki.security("read"))
    with embedder, pytest.raises(InvalidArgument):
        embedder.embed(b"not an image")
    exercise_web(metered_web, pki)
    exported = {
        "index": scrape(metered_shard.metrics_port).names,
        "embedder": scrape(secure_embedder.metrics_port, pki.keys["read"], pki.ca).names,
        "web": scrape(metered_web.metrics_port, pki.keys["read"], pki.ca).names,
    }
    assert used - set().union(*exported.values()) == set()
    # Each section of the dashboard is fed by its own kind of server.
    assert {n for n in used if n.startswith("http_server")} <= exported["web"]
    assert {n for n in used if n.startswith("imagesim_index")} <= exported["index"]
    assert {n for n in used if n.startswith("imagesim_embedder")} <= exported["embedder"]
    # Variables list every server: the web server's job too.
    assert "process_start_time_seconds" in exported["web"]
