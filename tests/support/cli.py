"""Run the `imagesim` CLI as a user would, in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(
    *args: str, check: bool = True, timeout: float = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`imagesim ARGS...`; with `check`, a non-zero exit raises with its stderr."""
    result = subprocess.run(
        [sys.executable, "-m", "imagesim.client.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"imagesim {' '.join(args)} failed:\n{result.stderr}")
    return result
