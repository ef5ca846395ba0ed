"""deploy/healthcheck.py (`imagesim-health` in the images): the exec probes' and compose's
health check, run as a process against real servers, over TLS and in plaintext."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import Pki
from tests.deploy_support import DEPLOY

SCRIPT = DEPLOY / "healthcheck.py"


def health(*args: str) -> subprocess.CompletedProcess:
    """The check as a process; 30 s for the check unless the test says (a noisy machine can
    take longer than the probe's 3 s default for a TLS handshake)."""
    clean_env = {"PATH": "/usr/bin:/bin"}  # no IMAGESIM_* variable from the test's environment
    timeout = [] if "--timeout" in args else ["--timeout", "30"]
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, *timeout],
        capture_output=True,
        text=True,
        timeout=90,
        env=clean_env,
    )


def test_a_tls_shard_is_serving_when_checked_with_its_ca(start_shard, pki: Pki):
    shard = start_shard(8, *pki.server_args(), security=pki.security())
    ok = health("grpc", shard.address, "--tls-ca", str(pki.ca))
    assert ok.returncode == 0, ok.stderr
    assert "SERVING" in ok.stdout
    # the Index service by name, as Kubernetes' `grpc.service` would ask
    by_name = health(
        "grpc", shard.address, "--tls-ca", str(pki.ca), "--service", "imagesim.v1.Index"
    )
    assert by_name.returncode == 0, by_name.stderr
    unknown = health("grpc", shard.address, "--tls-ca", str(pki.ca), "--service", "nope")
    assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    # plaintext against TLS (what Kubernetes' own grpc probe does before 1.37), another CA
    assert health("grpc", shard.address, "--timeout", "2").returncode == 1
    wrong_ca = health("grpc", shard.address, "--tls-ca", str(pki.other_ca), "--timeout", "30")
    assert wrong_ca.returncode == 1 and "UNAVAILABLE" in wrong_ca.stderr
    missing = health("grpc", shard.address, "--tls-ca", "/nonexistent/ca.crt")
    assert missing.returncode == 1 and "cannot read a TLS file" in missing.stderr


def test_a_plaintext_shard_and_a_stopped_one(start_shard):
    shard = start_shard(8)
    assert health("grpc", shard.address).returncode == 0
    shard.stop()
    gone = health("grpc", shard.address, "--timeout", "2")
    assert gone.returncode == 1
    assert gone.stderr.startswith(f"imagesim-health: {shard.address}: ")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_checks_want_a_2xx_answer(http_server: str):
    assert health("http", f"{http_server}/healthz").returncode == 0
    unready = health("http", f"{http_server}/readyz")
    assert unready.returncode == 1 and "HTTP 503" in unready.stderr
    refused = health("http", "http://127.0.0.1:9/healthz", "--timeout", "2")
    assert refused.returncode == 1
