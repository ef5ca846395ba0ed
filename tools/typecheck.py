"""Type-check the package with mypy (`make typecheck`, part of `make test`).

The folders show the architecture (client/, index_server/, ... map to imagesim.client,
imagesim.index_server, ... through pyproject's package-dir), so mypy cannot read the package
from the source tree as it is, nor through the editable install's import hook. This mirrors the
installed layout as a tree of symlinks under .typecheck/ (rebuilt each run, so new files are
seen) and runs mypy on it with the settings in pyproject.toml ([tool.mypy]: strict on the core
modules).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / ".typecheck"


def link_tree() -> Path:
    """.typecheck/imagesim/... with a symlink per source file, as installed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = config["package-dir"]
    shutil.rmtree(TREE, ignore_errors=True)
    for package in config["packages"]:
        source = ROOT / package_dir.get(package, package.replace(".", "/"))
        if package not in package_dir:  # a subpackage of a mapped package, e.g. imagesim.v1
            parent = max((p for p in package_dir if package.startswith(p + ".")), key=len)
            source = (
                ROOT / package_dir[parent] / package.removeprefix(parent + ".").replace(".", "/")
            )
        target = TREE / package.replace(".", "/")
        target.mkdir(parents=True, exist_ok=True)
        for path in source.iterdir():
            if path.suffix in (".py", ".pyi") or path.name == "py.typed":
                (target / path.name).symlink_to(path)
    return TREE


def main() -> int:
    from mypy import api

    tree = link_tree()
    stdout, stderr, status = api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), str(tree / "imagesim"), *sys.argv[1:]]
    )
    sys.stdout.write(stdout.replace(str(tree) + "/", ""))
    sys.stderr.write(stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
