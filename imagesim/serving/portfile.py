"""The port announcement: after binding, a server writes where it listens as a JSON file,
atomically (a reader sees the whole file or none), so programs never scrape log text.

A gRPC server's file appears as soon as the port is bound, before the model or shard is loaded (the
Embedder takes seconds more), with "ready": false; it is rewritten with "ready": true once
health is SERVING, and with false again when the server starts shutting down."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from imagesim.atomic import write_text_atomic


def write_port_file(
    path: Path, host: str, port: int, metrics_port: int | None = None, ready: bool | None = None
) -> None:
    """{"host": ..., "port": ..., "pid": ..., "metrics_port": ..., "ready": ...} via a temporary
    file in the same directory, fsync, rename. `ready` None: no "ready" field (a server that
    serves as soon as it is bound)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"host": host, "port": port, "pid": os.getpid()}
    if metrics_port is not None:
        record["metrics_port"] = metrics_port
    if ready is not None:
        record["ready"] = ready
    write_text_atomic(path, json.dumps(record))


def read_port_file(path: Path) -> dict[str, Any] | None:
    """The announcement, or None while there is none yet."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
