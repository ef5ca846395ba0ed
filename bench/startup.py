"""Embedder start-up: seconds from launching the process to health SERVING, converting the
model (empty IR cache) and from the cached IR, and the resident memory once serving."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bench.common import Config, rss_mb, start_timed


@dataclass
class StartupResult:
    config: str
    cold_s: float | None  # empty IR cache: conversion included (OpenVINO only)
    cached_s: float
    rss_mb: float  # after start-up and warm-up, before any request


def startup(config: Config, work: Path, cold: bool) -> StartupResult:
    cache = work / f"ir-cache-{config.runtime}"
    args = [*config.server_args(), "--model-cache", str(cache)]
    cold_s = None
    if cold and config.runtime == "openvino":
        shutil.rmtree(cache, ignore_errors=True)
        server, cold_s = start_timed(work / f"startup-cold-{config.runtime}.log", *args)
        server.stop()
    server, cached_s = start_timed(work / f"startup-{config.runtime}.log", *args)
    try:
        rss = rss_mb(server.process.pid)
    finally:
        server.stop()
    return StartupResult(config.label, cold_s, cached_s, rss)
