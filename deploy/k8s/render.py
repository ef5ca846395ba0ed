#!/usr/bin/env python3
"""Render a kustomization the way `kubectl apply -k` does, for the subset deploy/k8s uses.

kustomize is not needed to apply these manifests (`kubectl apply -k DIR` has it built in), but
the test suite must render them where no kubectl is installed. This implements exactly the
kustomize features deploy/k8s uses and refuses any other field, so a new feature in a
kustomization fails loudly here instead of being skipped:

- `resources` (YAML files, or directories holding a kustomization.yaml), `components`
  (kind Component, applied after the resources);
- `namespace` (set on every namespaced object);
- `configMapGenerator` / `secretGenerator` (`literals`, `files` as `key=path` or `path`,
  `type`, `behavior` create/merge/replace, per-generator `options`);
- `replicas` (name, count), `images` (name, newName, newTag);
- `patches` with a strategic-merge patch (`path` or inline `patch`; the target is the patch's
  own kind and name): maps merge, `null` deletes a key, lists of containers, volumes, env and
  ports merge by their key, other lists are replaced, `$patch: replace` / `$patch: delete`.

Not reproduced: the content hash kustomize appends to generated ConfigMap names (and rewrites
references to), which changes names but not which object refers to which.

Usage: python deploy/k8s/render.py deploy/k8s/overlays/4-shards > all.yaml
"""

from __future__ import annotations

import base64
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

KUSTOMIZATION_FIELDS = {
    "apiVersion",
    "kind",
    "resources",
    "components",
    "namespace",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "replicas",
    "images",
    "patches",
}
GENERATOR_FIELDS = {"name", "literals", "files", "type", "behavior", "options"}
CLUSTER_SCOPED = {
    "Namespace",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PriorityClass",
}
# Strategic-merge keys of the lists the pod spec merges element by element.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
    "imagePullSecrets": "name",
}
SCALABLE = {"Deployment", "StatefulSet", "ReplicaSet"}


class RenderError(Exception):
    pass


def load_yaml_documents(path: Path) -> list[Doc]:
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def kustomization_file(directory: Path) -> Path:
    for name in ("kustomization.yaml", "kustomization.yml", "Kustomization"):
        if (directory / name).is_file():
            return directory / name
    raise RenderError(f"{directory}: no kustomization.yaml")


def key_of(doc: Doc) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def render(directory: Path) -> list[Doc]:
    """The objects `kubectl apply -k directory` would send (without name hashes)."""
    return _build(Path(directory), expected_kind="Kustomization", docs=[])


def _build(directory: Path, expected_kind: str, docs: list[Doc]) -> list[Doc]:
    path = kustomization_file(directory)
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - KUSTOMIZATION_FIELDS
    if unknown:
        raise RenderError(f"{path}: fields this renderer does not implement: {sorted(unknown)}")
    kind = spec.get("kind", "Kustomization")
    if kind != expected_kind:
        raise RenderError(f"{path}: kind {kind}, expected {expected_kind}")
    if expected_kind == "Kustomization":
        docs = []
    for resource in spec.get("resources", []):
        target = (directory / resource).resolve()
        if target.is_dir():
            docs.extend(_build(target, "Kustomization", []))
        else:
            docs.extend(load_yaml_documents(target))
    for component in spec.get("components", []):
        docs = _build((directory / component).resolve(), "Component", docs)
    options = spec.get("generatorOptions", {})
    for generator in spec.get("configMapGenerator", []):
        docs = _generate(directory, "ConfigMap", generator, options, docs)
    for generator in spec.get("secretGenerator", []):
        docs = _generate(directory, "Secret", generator, options, docs)
    for patch in spec.get("patches", []):
        _apply_patch(directory, patch, docs)
    for replica in spec.get("replicas", []):
        _set_replicas(replica, docs)
    for image in spec.get("images", []):
        _set_image(image, docs)
    if "namespace" in spec:
        for doc in docs:
            if doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = spec["namespace"]
    _check_unique(docs, path)
    return docs


def _generate(
    directory: Path, kind: str, generator: Doc, options: Doc, docs: list[Doc]
) -> list[Doc]:
    unknown = set(generator) - GENERATOR_FIELDS
    if unknown:
        raise RenderError(f"{kind} generator {generator.get('name')}: {sorted(unknown)}")
    data: dict[str, str] = {}
    for literal in generator.get("literals", []):
        name, sep, value = literal.partition("=")
        if not sep:
            raise RenderError(f"{kind} {generator['name']}: literal {literal!r} needs KEY=VALUE")
        data[name] = value
    for entry in generator.get("files", []):
        name, sep, file = entry.partition("=")
        source = directory / (file if sep else name)
        if not sep:
            name = Path(name).name
        if not source.is_file():
            raise RenderError(f"{kind} {generator['name']}: {source} does not exist")
        data[name] = source.read_text()
    labels = {**options.get("labels", {}), **generator.get("options", {}).get("labels", {})}
    doc: Doc = {"apiVersion": "v1", "kind": kind, "metadata": {"name": generator["name"]}}
    if labels:
        doc["metadata"]["labels"] = labels
    if kind == "Secret":
        doc["type"] = generator.get("type", "Opaque")
        doc["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    else:
        doc["data"] = data
    behavior = generator.get("behavior", "create")
    existing = [d for d in docs if key_of(d) == (kind, generator["name"])]
    if behavior == "create":
        if existing:
            raise RenderError(f"{kind} {generator['name']} is generated twice (use behavior)")
        return [*docs, doc]
    if not existing:
        raise RenderError(f"{kind} {generator['name']}: behavior {behavior} but no base object")
    if behavior == "merge":
        existing[0]["data"] = {**existing[0].get("data", {}), **doc["data"]}
    elif behavior == "replace":
        existing[0]["data"] = doc["data"]
    else:
        raise RenderError(f"{kind} {generator['name']}: unknown behavior {behavior!r}")
    return docs


def _apply_patch(directory: Path, patch: Doc, docs: list[Doc]) -> None:
    if set(patch) - {"path", "patch"}:
        raise RenderError(f"patch fields not implemented: {sorted(set(patch))}")
    if "path" in patch:
        bodies = load_yaml_documents(directory / patch["path"])
    else:
        bodies = [b for b in yaml.safe_load_all(patch["patch"]) if b is not None]
    for body in bodies:
        targets = [d for d in docs if key_of(d) == key_of(body)]
        if len(targets) != 1:
            raise RenderError(f"patch target {key_of(body)} not found")
        merged = strategic_merge(targets[0], body)
        targets[0].clear()
        targets[0].update(merged)


def strategic_merge(base: Any, patch: Any, field: str = "") -> Any:
    """`patch` merged into `base` (a new object) with Kubernetes' strategic-merge rules."""
    if isinstance(patch, dict) and isinstance(base, dict):
        if patch.get("$patch") == "replace":
            return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
        result = copy.deepcopy(base)
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            elif key in result:
                result[key] = strategic_merge(result[key], value, key)
            else:
                result[key] = copy.deepcopy(value)
        return result
    if isinstance(patch, list) and isinstance(base, list) and field in MERGE_KEYS:
        merge_key = MERGE_KEYS[field]
        result = copy.deepcopy(base)
        for item in patch:
            index = next(
                (i for i, old in enumerate(result) if old.get(merge_key) == item.get(merge_key)),
                None,
            )
            if item.get("$patch") == "delete":
                if index is not None:
                    del result[index]
            elif index is None:
                result.append(copy.deepcopy(item))
            else:
                result[index] = strategic_merge(result[index], item)
        return result
    return copy.deepcopy(patch)


def _set_replicas(replica: Doc, docs: list[Doc]) -> None:
    targets = [
        d for d in docs if d["kind"] in SCALABLE and d["metadata"]["name"] == replica["name"]
    ]
    if not targets:
        raise RenderError(f"replicas: no Deployment or StatefulSet named {replica['name']}")
    for doc in targets:
        doc["spec"]["replicas"] = int(replica["count"])


def _set_image(image: Doc, docs: list[Doc]) -> None:
    for container in (c for doc in docs for c in pod_containers(doc)):
        name, _, tag = container["image"].partition(":")
        if name == image["name"]:
            container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def pod_spec(doc: Doc) -> Doc | None:
    """The pod spec of a workload (Deployment, StatefulSet, Job, ...) or Pod, else None."""
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    template = doc.get("spec", {}).get("template")
    return template["spec"] if isinstance(template, dict) else None


def pod_containers(doc: Doc) -> list[Doc]:
    spec = pod_spec(doc)
    if spec is None:
        return []
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def _check_unique(docs: list[Doc], path: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        if key_of(doc) in seen:
            raise RenderError(f"{path}: {key_of(doc)} defined twice")
        seen.add(key_of(doc))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        docs = render(Path(argv[0]))
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
