"""Install boundaries: each console script runs on the extras it declares (the others' modules
are blocked in the process), and no stray top-level names are installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from imagesim.client.dump import VectorDump

# Modules of each extra: a console script may import only its own extra's.
EXTRA_MODULES = {
    "embedder": ("tensorflow", "keras", "openvino"),
    "index": ("annoy", "filelock"),
    "servers": ("grpc_health", "grpc_reflection"),
    "parquet": ("pyarrow",),
    "ray": ("ray",),
}


def run_blocked(
    blocked: tuple[str, ...], entry: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run a console script's entry point with `blocked` modules unimportable."""
    code = (
        "import sys\n"
        f"for name in {list(blocked)!r}:\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        f"module, _, function = {entry!r}.partition(':')\n"
        f"sys.argv = ['x', *{list(args)!r}]\n"
        "getattr(__import__(module, fromlist=[function]), function)()\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


CLIENT_BLOCKED = tuple(name for modules in EXTRA_MODULES.values() for name in modules)


def test_the_client_cli_runs_real_commands_without_server_packages(tmp_path: Path):
    # A command that reaches the network code (and fails there, cleanly).
    result = run_blocked(
        CLIENT_BLOCKED,
        "imagesim.client.cli:main",
        "stats",
        "--shards",
        "127.0.0.1:1",
        "--timeout",
        "3",
    )
    assert result.returncode == 1, result.stderr
    assert "UNAVAILABLE" in result.stderr and "ImportError" not in result.stderr
    # PCA needs only numpy: it trains on the client install.
    dump = tmp_path / "v.npz"
    rng = np.random.default_rng(0)
    VectorDump(
        [f"k{i}" for i in range(40)], rng.random((40, 64), dtype=np.float32), "f", "full"
    ).save(dump)
    result = run_blocked(
        CLIENT_BLOCKED,
        "imagesim.client.cli:main",
        "reducer",
        "train",
        str(dump),
        "--method",
        "pca",
        "--dims",
        "8",
        "--out",
        str(tmp_path / "pca"),
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "pca" / "reducer.json").is_file()
    # The autoencoder and the evaluation name the extra they need, in one line.
    for args in (
        (
            "train",
            str(dump),
            "--method",
            "autoencoder",
            "--dims",
            "8",
            "--out",
            str(tmp_path / "ae"),
        ),
        ("eval", str(dump), str(tmp_path / "pca")),
    ):
        result = run_blocked(CLIENT_BLOCKED, "imagesim.client.cli:main", "reducer", *args)
        assert result.returncode == 1
        assert (
            result.stderr.count("\n") == 1 and "pip install 'imagesim[reduction]'" in result.stderr
        )


def test_parquet_and_ray_commands_name_their_extra_when_it_is_missing(tmp_path: Path):
    (tmp_path / "photos").mkdir()
    for args, extra in (
        (("dump", str(tmp_path / "photos"), "--engine", "ray", "--out", "v.parquet"), "ray"),
        (("dump", str(tmp_path / "photos"), "--out", "v.parquet"), "parquet"),
        (("index", "--from-dump", str(tmp_path / "v.parquet")), "parquet"),
    ):
        result = run_blocked(CLIENT_BLOCKED, "imagesim.client.cli:main", *args)
        assert result.returncode == 1, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert f"pip install 'imagesim[{extra}]'" in result.stderr


def test_the_index_server_starts_without_the_embedder_packages(tmp_path: Path):
    result = run_blocked(
        EXTRA_MODULES["embedder"],
        "imagesim.index_server.main:main",
        "--port",
        "0",
        "--data",
        str(tmp_path / "shard"),
        "--dims",
        "8",
        "--max-k",
        "0",
    )
    # --max-k 0 is refused after every import the server needs has happened.
    assert result.returncode == 2, result.stderr
    assert "ImportError" not in result.stderr and "--max-k must be at least 1" in result.stderr


def test_the_embedder_server_starts_without_the_index_packages(tmp_path: Path):
    result = run_blocked(
        EXTRA_MODULES["index"],
        "imagesim.embedder_server.main:main",
        "--port",
        "0",
        "--weights",
        str(tmp_path / "absent.h5"),
    )
    # Reached loading the weights: every import of the model path succeeded.
    assert result.returncode == 2, result.stderr
    assert "does not exist" in result.stderr and "ImportError" not in result.stderr


def test_no_generic_top_level_modules_are_installed():
    code = (
        "import importlib.util as u; print([m for m in ('client', 'embedder_server', "
        "'index_server', 'reduction', 'testing') if u.find_spec(m)])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.stdout.strip() == "[]"


def test_the_wheel_holds_the_product_only_and_builds_without_warnings(tmp_path: Path):
    """Test helpers (soak, browser, hostile inputs, launchers) live under tests/, never in the
    wheel; the build prints no setuptools warning."""
    import zipfile

    root = Path(__file__).resolve().parent.parent
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *offline, "-w", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert "Warning" not in built.stdout + built.stderr
    (wheel,) = tmp_path.glob("imagesim-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "imagesim/client/cli/__init__.py" in modules
    assert "imagesim/web/static/index.html" in names
    helpers = ("test", "soak", "hostile", "selenium", "browser", "launch")
    assert [n for n in modules if any(h in n.rsplit("/", 1)[-1] for h in helpers)] == []
    assert not [n for n in names if n.startswith(("tests/", "imagesim/testing/"))]


def test_the_client_and_the_embedder_never_import_each_other():
    """The Ray engine, which runs the Embedder's code for the CLI, lives in imagesim.bulk; that
    room uses the Embedder's modules but not the client's, and the Embedder uses neither."""
    root = Path(__file__).resolve().parent.parent
    for folder, other in (
        ("client", "embedder_server"),
        ("embedder_server", "imagesim.client"),
        ("embedder_server", "imagesim.bulk"),
        ("imagesim/bulk", "imagesim.client"),
    ):
        sources = sorted((root / folder).rglob("*.py"))
        assert sources
        assert [str(p.relative_to(root)) for p in sources if other in p.read_text()] == []
