"""Install boundaries: the client works without TensorFlow or Annoy; no stray top-level names."""

from __future__ import annotations

import subprocess
import sys

BLOCK_HEAVY = (
    "import sys\n"
    "for name in ('tensorflow', 'keras', 'annoy', 'grpc_health', 'grpc_reflection'):\n"
    "    sys.modules[name] = None  # importing it now raises ImportError\n"
)


def test_client_imports_and_runs_without_model_dependencies():
    code = BLOCK_HEAVY + (
        "from imagesim.client import cli, collection, bulk, embedder_client, index_client\n"
        "try:\n"
        "    cli.main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok")


def test_no_generic_top_level_modules_are_installed():
    code = (
        "import importlib.util as u; print([m for m in ('client', 'embedder_server', "
        "'index_server') if u.find_spec(m)])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.stdout.strip() == "[]"
