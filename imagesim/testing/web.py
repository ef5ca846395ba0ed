"""Start `imagesim-web` as a process on a free loopback port and wait until it answers."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


class WebProcess:
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
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port_file = self.log_path.with_suffix(".port.json")
        self.port_file.unlink(missing_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_start = self._log.tell()
        command = [
            sys.executable, "-m", "imagesim.web.main", "--host", "127.0.0.1", "--port", "0",
            "--port-file", str(self.port_file), "--embedder", embedder, "--shards", shards,
            "--images-root", str(images_root), *args,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        self.url = ""
        self.tls = tls
        self.metrics_port: int | None = None

    def log_text(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> str:
        """Wait for the announced port and a 200 from /healthz; returns the base URL."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"imagesim-web exited with {self.process.returncode}:\n{self.log_text()}"
                )
            if not self.url and self.port_file.exists():
                announced = json.loads(self.port_file.read_text())
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
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"imagesim-web not ready in time:\n{self.log_text()}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def start_web(
    log_path: Path, embedder: str, shards: str, images_root: Path, *args: str
) -> WebProcess:
    web = WebProcess(log_path, embedder, shards, images_root, *args)
    web.wait_ready()
    return web
