"""deploy/Dockerfile and deploy/compose.yaml cannot be built or run here (no Docker engine, no
base images): they are checked against what they must agree with instead. The Python version
against requires-python; each image's entry point against pyproject's console scripts and the
extra it installs against the README's install steps; the sources it copies against the
package layout; the flags compose passes against the programs' own parsers; the user against
the Kubernetes manifests. The checks are shown to fail on broken copies."""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from imagesim.channel import CLIENT_ENV_PREFIX, ChannelSecurity, Services
from imagesim.settings_base import declared
from tests.deploy_support import (
    CLI_ENV,
    CLIENT_ENV,
    DEPLOY,
    PENDING,
    ROOT,
    Program,
    dockerfile_stages,
    programs,
    pyproject,
    readme_install_extras,
    stage_chain,
    start_refusal,
)

TARGETS = ("index", "embedder", "web", "client")
USER = "10001:10001"


@pytest.fixture(scope="module")
def progs() -> dict[str, Program]:
    return programs()


def dockerfile_problems(text: str, progs: dict[str, Program]) -> list[str]:
    problems: list[str] = []
    project = pyproject()
    scripts = project["project"]["scripts"]
    extras = project["project"]["optional-dependencies"]
    readme_extras = readme_install_extras()
    args, stages = dockerfile_stages(text)
    python = args.get("PYTHON_VERSION", "")
    if python not in SpecifierSet(project["project"]["requires-python"]):
        problems.append(f"Python {python} is not {project['project']['requires-python']}")
    for stage in stages.values():
        if stage.base not in stages and not re.fullmatch(
            r"python:\$\{PYTHON_VERSION\}-slim-\w+", stage.base
        ):
            problems.append(f"stage {stage.name} is built on {stage.base}")
    if re.search(r"==\d", text):
        problems.append("a version pinned in the Dockerfile: pins belong in pyproject.toml")
    problems += _copied_sources(stages, project)
    for target in TARGETS:
        if target not in stages:
            problems.append(f"no target {target}")
            continue
        problems += [f"target {target}: {p}" for p in _target(target, stages, progs, scripts)]
        entry = json.loads(stages[target].all("ENTRYPOINT")[-1])[0]
        extra = _installed_extra(target, stages)
        wanted = readme_extras.get(entry, target if target != "client" else "")
        pending = progs.get(entry) is not None and progs[entry].parser is None
        if extra != wanted:
            problems.append(f"target {target} installs [{extra}], the README says [{wanted}]")
        elif extra and extra not in extras and not pending:
            problems.append(f"target {target} installs [{extra}]: no such extra in pyproject")
    return problems


def _copied_sources(stages: dict, project: dict[str, Any]) -> list[str]:
    problems = []
    copied = set()
    for stage in stages.values():
        for rest in stage.all("COPY"):
            words = [w for w in rest.split() if not w.startswith("--")]
            if "--from=" in rest:
                continue
            for source in words[:-1]:
                copied.add(source.rstrip("/"))
                web_pending = source.startswith("web_server") and not (ROOT / "web_server").exists()
                if not (ROOT / source).exists() and not web_pending:
                    problems.append(f"COPY {source}: not in the repository")
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    needed = package_dirs | {
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        project["project"]["readme"],
        "protos",
        "tools/gen_protos.py",
    }
    problems += [f"the build does not copy {path}" for path in sorted(needed - copied)]
    return problems


def _installed_extra(target: str, stages: dict) -> str | None:
    sources = [
        re.search(r"--from=(\S+) /opt/imagesim /opt/imagesim", rest)
        for rest in stages[target].all("COPY")
    ]
    venv = next((m.group(1) for m in sources if m), None)
    if venv is None:
        return None
    install = " ".join(stages[venv].all("RUN"))
    match = re.search(r'pip install "\$\(ls /wheels/imagesim-\*\.whl\)(?:\[(\w+)\])?"', install)
    return (match.group(1) or "") if match else None


def _target(target: str, stages: dict, progs: dict[str, Program], scripts: dict) -> list[str]:
    problems = []
    chain = stage_chain(stages, target)
    entries = stages[target].all("ENTRYPOINT")
    if not entries:
        return ["no ENTRYPOINT"]
    entry = json.loads(entries[-1])[0]
    if entry not in scripts and (entry, "") not in PENDING:
        problems.append(f"runs {entry}, not a console script of pyproject.toml")
    if stages[target].all("USER") != [USER]:
        problems.append(f"does not run as {USER}")
    if not any("useradd" in r and "--uid 10001" in r for s in chain for r in s.all("RUN")):
        problems.append("no user 10001 in the image")
    if entry != "imagesim" and not any(
        "deploy/healthcheck.py /usr/local/bin/imagesim-health" in r
        for s in chain
        for r in s.all("COPY")
    ):
        problems.append("has no imagesim-health for its health checks")
    prog = progs.get(entry)
    env = set()
    for stage in chain:
        for rest in stage.all("ENV"):
            env |= {pair.split("=", 1)[0] for pair in rest.split()}
    if prog is not None:
        problems += prog.check_env(env)
        exposed = [int(p) for r in stages[target].all("EXPOSE") for p in r.split()]
        if prog.default_port is not None and exposed[:1] != [prog.default_port]:
            problems.append(f"EXPOSE {exposed}: the server's default port is {prog.default_port}")
    return problems


def model_stage_problems(text: str, progs: dict[str, Program]) -> list[str]:
    """The embedder's model is made at build time by the server's own conversion module, into
    the cache the image's environment points the server at."""
    _, stages = dockerfile_stages(text)
    run = " ".join(stages["model"].all("RUN"))
    match = re.search(r"-m (imagesim\.embedder_server\.runtimes\.convert) (.*)", run)
    if match is None:
        return ["the model stage does not run the conversion module"]
    argv = [a.strip('"') for a in match.group(2).split()]
    argv = ["imagenet" if a == "${WEIGHTS}" else a for a in argv]
    _, problems = progs[match.group(1)].check_args(argv)
    cache = argv[argv.index("--cache") + 1]
    env = " ".join(stages["embedder"].all("ENV"))
    if f"IMAGESIM_EMBEDDER_MODEL_CACHE={cache}" not in env:
        problems.append(f"the embedder image does not point the server at {cache}")
    keras = re.search(r"KERAS_HOME=(\S+)", " ".join(stages["model"].all("ENV")))
    if keras is None or f"KERAS_HOME={keras.group(1)}" not in env:
        problems.append("KERAS_HOME differs between the model stage and the embedder image")
    return problems


def test_the_dockerfile_agrees_with_pyproject_and_the_readme(progs):
    assert dockerfile_problems((DEPLOY / "Dockerfile").read_text(), progs) == []


def test_the_embedder_image_carries_its_model(progs):
    text = (DEPLOY / "Dockerfile").read_text()
    assert model_stage_problems(text, progs) == []
    # the Kubernetes init step copies the image's cache from the same place
    deployment = (DEPLOY / "k8s" / "base" / "embedder-deployment.yaml").read_text()
    cache = re.search(r"--cache (\S+)", re.sub(r"\\\n\s*", " ", text)).group(1)  # type: ignore[union-attr]
    assert f"cp -a {cache}/. " in deployment


def test_annoy_is_not_built_for_the_build_machine_only():
    text = (DEPLOY / "Dockerfile").read_text()
    flags = re.search(r'ANNOY_COMPILER_ARGS="([^"]+)"', text).group(1).split(",")  # type: ignore[union-attr]
    assert "-march=${ANNOY_MARCH}" in flags and "-march=native" not in flags
    assert "ARG ANNOY_MARCH=x86-64-v3" in text


BROKEN_DOCKERFILES = {
    "python": (("ARG PYTHON_VERSION=3.11", "ARG PYTHON_VERSION=3.9"), "Python 3.9"),
    "entry point": (
        ('ENTRYPOINT ["imagesim-index"]', 'ENTRYPOINT ["imagesim-shard"]'),
        "imagesim-shard",
    ),
    "extra": (('whl)[index]"', 'whl)[indexer]"'), "installs [indexer]"),
    "user": (("USER 10001:10001\nEXPOSE 50061", "USER root\nEXPOSE 50061"), "does not run as"),
    "copy": (("COPY index_server index_server\n", ""), "does not copy index_server"),
    "pin": (('pip install "$(ls', 'pip install numpy==2.0 "$(ls'), "version pinned"),
    "variable": (
        ("IMAGESIM_EMBEDDER_MODEL_CACHE=", "IMAGESIM_EMBEDDER_MODELS="),
        "does not read the variable IMAGESIM_EMBEDDER_MODELS",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_DOCKERFILES))
def test_dockerfile_checks_catch_a_broken_copy(progs, breakage: str):
    (old, new), expected = BROKEN_DOCKERFILES[breakage]
    text = (DEPLOY / "Dockerfile").read_text()
    assert old in text
    problems = dockerfile_problems(text.replace(old, new, 1), progs)
    assert any(expected in p for p in problems), problems


# ---- compose -------------------------------------------------------------------------------


def interpolate(value: str) -> str:
    """compose's ${VAR}, ${VAR:?message} and ${VAR:-default}, with every variable set to a
    sample path."""
    return re.sub(r"\$\{(\w+)(?::[?-][^}]*)?\}", "/srv/photos", value)


def compose_problems(compose: dict[str, Any], progs: dict[str, Program]) -> list[str]:
    problems: list[str] = []
    _, stages = dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    shard_ids, index_addresses, ports_of = set(), [], {}
    for name, service in services.items():
        where = f"service {name}"
        repository = service["image"].rsplit(":", 1)[0]
        target = "client" if repository == "imagesim" else repository.removeprefix("imagesim-")
        build = service.get("build", {})
        if build.get("target") != target:
            problems.append(
                f"{where}: image {service['image']} but build target {build.get('target')}"
            )
        if (DEPLOY / build.get("context", "")).resolve() != ROOT or build.get(
            "dockerfile"
        ) != "deploy/Dockerfile":
            problems.append(f"{where}: not built from deploy/Dockerfile at the repository root")
        if service.get("user") != USER:
            problems.append(f"{where}: user {service.get('user')}, not {USER}")
        entry = json.loads(stages[target].all("ENTRYPOINT")[-1])[0] if target in stages else None
        prog = progs.get(entry or "")
        if prog is None:
            problems.append(f"{where}: no known program for image {service['image']}")
            continue
        argv = [interpolate(a) for a in service.get("command", [])]
        problems += [f"{where}: {p}" for p in prog.check_env(set(service.get("environment", {})))]
        parsed, arg_problems = prog.check_args(argv)
        problems += [f"{where}: {p}" for p in arg_problems]
        mounts = {}
        for volume in service.get("volumes", []):
            source, target_path = interpolate(volume).split(":")[:2]
            if not source.startswith(("/", ".")) and source not in declared:
                problems.append(f"{where}: volume {source} is not declared")
            mounts[target_path] = source
        mounts.update({path: "tmpfs" for path in service.get("tmpfs", [])})
        if parsed is not None:
            ports_of[name] = getattr(parsed, "port", None)
            for flag in sorted(prog.path_flags()):
                value = getattr(parsed, flag.lstrip("-").replace("-", "_"), None)
                if (
                    value is not None
                    and service.get("read_only")
                    and not any(
                        PurePosixPath(m) == PurePosixPath(str(value))
                        or PurePosixPath(m) in PurePosixPath(str(value)).parents
                        for m in mounts
                    )
                ):
                    problems.append(f"{where}: {flag} {value} is on no volume (read-only root)")
            if entry == "imagesim-index":
                if parsed.shard_id in shard_ids:
                    problems.append(f"{where}: shard id {parsed.shard_id} used twice")
                shard_ids.add(parsed.shard_id)
                index_addresses.append(f"{name}:{parsed.port}")
            refusal = start_refusal(parsed)
            if refusal:
                problems.append(f"{where}: would not start: {refusal}")
            if "--insecure" in argv:
                for published in service.get("ports", []):
                    if not str(published).startswith("127.0.0.1:"):
                        problems.append(f"{where}: plaintext port {published} beyond loopback")
        problems += _healthcheck(where, service, progs, ports_of.get(name))
        for dependency, condition in (service.get("depends_on") or {}).items():
            if dependency not in services:
                problems.append(f"{where}: depends on unknown {dependency}")
            elif condition.get("condition") == "service_healthy" and not services[dependency].get(
                "healthcheck"
            ):
                problems.append(f"{where}: waits for {dependency} to be healthy: no healthcheck")
    embedders = [f"{n}:{ports_of.get(n)}" for n in services if n.startswith("embedder")]
    for name, service in services.items():
        command = service.get("command", [])
        shards, embedder = _flag(command, "--shards"), _flag(command, "--embedder")
        if shards is not None:
            listed = sorted(s.strip() for s in shards.split(","))
            if listed != sorted(index_addresses):
                problems.append(f"service {name}: --shards {listed}, shards are {index_addresses}")
        if embedder is not None and embedder not in embedders:
            problems.append(f"service {name}: --embedder {embedder} is not {embedders}")
    return problems


def _flag(argv: list[str], flag: str) -> str | None:
    """A flag's value as written (also for a program still pending here)."""
    for i, token in enumerate(argv):
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
        if token == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _healthcheck(where: str, service: dict, progs: dict, port: int | None) -> list[str]:
    test = (service.get("healthcheck") or {}).get("test")
    if not test:
        return [f"{where}: no healthcheck"]
    if test[0] != "CMD" or test[1] != "imagesim-health":
        return [f"{where}: healthcheck {test} does not run imagesim-health"]
    parsed, problems = progs["imagesim-health"].check_args(test[2:])
    if parsed is not None and port is not None:
        target = parsed.address if parsed.kind == "grpc" else parsed.url
        if not re.search(rf"127\.0\.0\.1:{port}\b", target):
            problems.append(f"healthcheck {target} is not this service's port {port}")
    return [f"{where}: {p}" for p in problems]


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_an_embedder_two_shards_and_the_web_page(progs):
    compose = load_compose()
    assert set(compose["services"]) == {"embedder", "index-0", "index-1", "web"}
    assert compose_problems(compose, progs) == []


def _service(compose: dict, name: str) -> dict:
    return compose["services"][name]


BROKEN_COMPOSE = {
    "flag": (lambda c: _service(c, "index-1")["command"].append("--shards=a"), "--shards: not"),
    "abbreviated flag": (
        lambda c: _service(c, "index-1")["command"].append("--shard=1/2"),
        "--shard: not a flag",
    ),
    "shard id": (
        lambda c: _service(c, "index-1")["command"].__setitem__(5, "--shard-id=index-0"),
        "shard id index-0 used twice",
    ),
    "shard list": (
        lambda c: _service(c, "index-1")["command"].__setitem__(1, "--port=50062"),
        "--shards",
    ),
    "health port": (
        lambda c: _service(c, "index-0")["healthcheck"].update(
            {"test": ["CMD", "imagesim-health", "grpc", "127.0.0.1:50051"]}
        ),
        "is not this service's port",
    ),
    "volume": (
        lambda c: _service(c, "index-0")["volumes"].__setitem__(0, "shard-0:/var/lib/imagesim"),
        "volume shard-0 is not declared",
    ),
    "data off volume": (
        lambda c: _service(c, "index-0")["command"].__setitem__(3, "--data=/data/shard"),
        "--data /data/shard is on no volume",
    ),
    "exposed": (
        lambda c: _service(c, "index-0")["ports"].__setitem__(0, "50061:50061"),
        "beyond loopback",
    ),
    "user": (lambda c: _service(c, "web").pop("user"), "not 10001:10001"),
    "plaintext without --insecure": (
        lambda c: _service(c, "web")["command"].remove("--insecure"),
        "would not start: refusing to serve on 0.0.0.0",
    ),
    "target": (
        lambda c: _service(c, "embedder")["build"].update({"target": "index"}),
        "build target index",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN_COMPOSE))
def test_compose_checks_catch_a_broken_copy(progs, breakage: str):
    compose = load_compose()
    breaks, expected = BROKEN_COMPOSE[breakage]
    breaks(compose)
    problems = compose_problems(compose, progs)
    assert any(expected in p for p in problems), problems


def test_the_users_agree_everywhere():
    for path in (DEPLOY / "k8s").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            spec = ((doc or {}).get("spec") or {}).get("template", {}).get("spec", {})
            if "securityContext" in spec:
                context = spec["securityContext"]
                assert f"{context['runAsUser']}:{context['runAsGroup']}" == USER, path


def test_the_client_variables_are_the_ones_the_library_reads():
    values = {name: f"/x/{name}" for name in CLIENT_ENV}
    security = ChannelSecurity.from_env(values)
    read = {
        name
        for name in CLIENT_ENV
        if f"/x/{name}" in {str(v) for v in vars(security).values() if v is not None}
    }
    assert read == CLIENT_ENV
    # The services' addresses (the CLI's --embedder and --shards) are declared in Services.
    assert {item.env(CLIENT_ENV_PREFIX) for item in declared(Services)} == CLI_ENV


def test_the_docs_say_these_files_are_not_built_here():
    doc = (ROOT / "docs" / "scaling.md").read_text()
    section = " ".join(doc.split("## The parts", 1)[1].split("\n## ", 1)[0].split())
    assert "cannot be built or run here" in section
    for path in ("deploy/Dockerfile", "deploy/compose.yaml", "deploy/k8s"):
        assert path in section


def test_dockerfile_paths_exist():
    for path in ("Dockerfile", "Dockerfile.dockerignore", "compose.yaml", "healthcheck.py"):
        assert (DEPLOY / path).is_file()
    assert Path(DEPLOY / "Dockerfile.dockerignore").read_text().count("imagesim/v1") == 1
