"""Install boundaries of the web extra: imagesim-web runs without the servers' packages, and
the client CLI (duplicates and contact sheets included) without the web's."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.test_packaging import CLIENT_BLOCKED, EXTRA_MODULES, run_blocked

WEB_MODULES = ("fastapi", "starlette", "uvicorn", "multipart", "python_multipart")


def test_the_web_server_serves_without_the_embedder_and_index_packages(tmp_path: Path):
    blocked = [*EXTRA_MODULES["embedder"], *EXTRA_MODULES["index"], *EXTRA_MODULES["servers"]]
    port_file = tmp_path / "web.port.json"
    code = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None\n"
        "from imagesim.web.main import main\n"
        f"main(['--port', '0', '--port-file', {str(port_file)!r}, '--images-root', "
        f"{str(tmp_path)!r}, '--embedder', '127.0.0.1:1', '--shards', '127.0.0.1:2'])\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not port_file.exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{json.loads(port_file.read_text())['port']}"
        while True:  # the port is announced (listening) just before the app starts
            try:
                with urllib.request.urlopen(url + "/healthz", timeout=30) as answer:
                    assert json.loads(answer.read()) == {"status": "ok"}
                    break
            except (urllib.error.URLError, OSError):  # refused, reset or slow to start
                assert time.monotonic() < deadline
                time.sleep(0.05)
        with urllib.request.urlopen(url + "/api/limits", timeout=10) as answer:
            # The embedder is not there: the page still gets the default limits.
            limits = json.loads(answer.read())
            assert limits["from_embedder"] is False
            assert limits["max_image_bytes"] == 32 * 1024 * 1024
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "ImportError" not in output and "stopped" in output


def test_the_cli_finds_duplicates_without_the_web_packages():
    result = run_blocked(
        (*CLIENT_BLOCKED, *WEB_MODULES),
        "imagesim.client.cli:main",
        "duplicates",
        "--shards",
        "127.0.0.1:1",
        "--timeout",
        "3",
    )
    assert result.returncode == 1, result.stderr
    assert "UNAVAILABLE" in result.stderr and "ImportError" not in result.stderr
