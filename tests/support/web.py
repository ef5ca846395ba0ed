"""Start `imagesim-web` as a process on a free loopback port and wait until it answers."""

from __future__ import annotations

import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from imagesim.serving.portfile import read_port_file
from tests.support.launch import LoggedProcess


class WebProcess(LoggedProcess):
    """One `imagesim-web` process with its log file."""

    what = "imagesim-web"

    def __init__(
        self,
        log_path: Path,
        embedder: str,
        shards: str,
        images_root: Path,
        *args: str,
        env: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """`tls`: the server uses TLS (--tls-cert ... among `args`); the client context the
        readiness check connects with."""
        server_args = ["--embedder", embedder, "--shards", shards]
        server_args += ["--images-root", str(images_root), *args]
        super().__init__("imagesim.web.main", server_args, log_path, env)
        self.url = ""
        self.tls = tls

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait for the announced port and a 200 from /healthz; returns the base URL."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            if not self.url:
                announced = read_port_file(self.port_file)
                if announced is not None:
                    scheme = "https" if self.tls else "http"
                    self.url = f"{scheme}://{announced['host']}:{announced['port']}"
                    self.metrics_port = announced.get("metrics_port")
            if self.url:
                try:
                    with urllib.request.urlopen(
                        self.url + "/healthz", timeout=2, context=self.tls
                    ) as answer:
                        if answer.status == 200:
                            return self.url
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            self._check_time(deadline)
            time.sleep(0.05)


def start_web(
    log_path: Path, embedder: str, shards: str, images_root: Path, *args: str
) -> WebProcess:
    web = WebProcess(log_path, embedder, shards, images_root, *args)
    web.wait_ready()
    return web
