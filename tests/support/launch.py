"""Start imagesim server processes and wait until they serve (tests, demo, benchmark).

A server is started on port 0, binds a free port itself (no find-then-bind race) and announces
it in its --port-file (JSON, written atomically); we read that, then wait for gRPC health
SERVING (over TLS when the server uses it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from imagesim.channel import ChannelSecurity, open_channel
from imagesim.serving.portfile import read_port_file


class LoggedProcess:
    """`python -m MODULE --host 127.0.0.1 --port PORT --port-file F ARGS...` with its output
    appended to a log file; the port file sits beside the log."""

    what = "server"  # for error messages

    def __init__(
        self,
        module: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.port_file = self.log_path.with_suffix(".port.json")
        self.port_file.unlink(missing_ok=True)  # an earlier run's announcement
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_start = self._log.tell()  # earlier runs may have written to the same file
        cmd = [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--port-file", str(self.port_file), *args]
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.metrics_port: int | None = None

    def log_text(self) -> str:
        """What this process has logged so far."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode(errors="replace")

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.what} exited with code {self.process.returncode}; log:\n{self.log_text()}"
            )

    def _check_time(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            self.stop()
            raise TimeoutError(f"{self.what} not ready in time; log:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the process (SIGTERM: graceful) and wait for it; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: no clean-up at all (crash tests)."""
        self.stop(signal.SIGKILL)


class ServerProcess(LoggedProcess):
    """One gRPC server process (`imagesim-embedder` or `imagesim-index`) with its log file."""

    def __init__(
        self,
        module: str,
        args: list[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        port: int = 0,
        security: ChannelSecurity | None = None,
    ) -> None:
        super().__init__(module, args, log_path, env, port)
        self.security = security or ChannelSecurity()  # for the health check (TLS, CA)
        self.address = ""

    def wait_ready(self, timeout: float = 180.0) -> str:
        """Wait for the bound port and health SERVING; returns 'host:port'."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        deadline = time.monotonic() + timeout
        while not self.address:
            self._check_alive()
            announced = read_port_file(self.port_file)
            if announced is not None:
                self.address = f"{announced['host']}:{announced['port']}"
                self.metrics_port = announced.get("metrics_port")
                break
            self._check_time(deadline)
            time.sleep(0.05)
        with open_channel(self.address, security=self.security) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                self._check_alive()
                try:
                    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return self.address
                except grpc.RpcError:
                    pass
                self._check_time(deadline)
                time.sleep(0.1)


def start_embedder(
    log_path: Path, *args: str, timeout: float = 300.0, security: ChannelSecurity | None = None
) -> ServerProcess:
    server = ServerProcess("imagesim.embedder_server.main", list(args), log_path, security=security)
    server.wait_ready(timeout)
    return server


def start_index(
    log_path: Path,
    data: Path,
    dims: int,
    *args: str,
    port: int = 0,
    security: ChannelSecurity | None = None,
) -> ServerProcess:
    """An Index shard on `data` (port 0: any free port; give one to restart in place)."""
    server = ServerProcess(
        "imagesim.index_server.main",
        ["--data", str(data), "--dims", str(dims), *args],
        log_path,
        port=port,
        security=security,
    )
    server.wait_ready(60.0)
    return server
