"""Cross-reference checks of rendered Kubernetes objects: what the API schemas cannot see.

check(docs, ...) returns a list of problems (empty: consistent). It checks that Services and
PodDisruptionBudgets select pods that exist and name ports those pods have; that probes, volume
mounts, Secrets, ConfigMaps and claims a pod uses exist (with the keys it reads); that every
container's arguments parse with the program's own argument parser and its IMAGESIM_*
variables are ones the program reads; that files flags name lie on mounted volumes (and are keys
of the mounted Secret); that the shard list clients get names every StatefulSet pod; that pods
are non-root, unprivileged and have resources; that images carry the package version.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from tests.deploy_support import Program, start_refusal

Doc = dict[str, Any]
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
NOT_OURS = {"sh", "sleep"}  # commands of the images' base system, not checked further
CLIENT_FILE_ENV = {"IMAGESIM_TLS_CA", "IMAGESIM_TLS_CLIENT_CERT", "IMAGESIM_TLS_CLIENT_KEY"}


def _index(docs: list[Doc]) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_template(doc: Doc) -> Doc | None:
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template: Doc = doc["spec"]["template"]
        return template
    return None


def workloads(docs: list[Doc]) -> Iterator[tuple[Doc, Doc]]:
    for doc in docs:
        template = pod_template(doc)
        if template is not None:
            yield doc, template


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def container_ports(template: Doc) -> tuple[set[str], set[int]]:
    names, numbers = set(), set()
    for container in template["spec"]["containers"]:
        for port in container.get("ports", []):
            numbers.add(port["containerPort"])
            if "name" in port:
                names.add(port["name"])
    return names, numbers


def image_program(image: str, entrypoints: dict[str, str]) -> str | None:
    """The program an image runs: its Dockerfile target's ENTRYPOINT (image imagesim-X is
    target X; image imagesim is target client)."""
    repository = image.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    target = "client" if repository == "imagesim" else repository.removeprefix("imagesim-")
    return entrypoints.get(target)


def substitute(value: str, env: dict[str, str]) -> tuple[str, list[str]]:
    """Kubernetes' $(VAR) expansion; returns the result and the variables left undefined."""
    undefined = []

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            undefined.append(name)
            return match.group(0)
        return env[name]

    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, value), undefined


def check(
    docs: list[Doc],
    programs: dict[str, Program],
    entrypoints: dict[str, str],
    version: str,
    external_secrets: frozenset[str] = frozenset(),
    context: list[Doc] | None = None,
) -> list[str]:
    """Problems of `docs`; `context` holds objects they may refer to without containing them
    (e.g. a Job against the rendered base), `external_secrets` Secrets made by hand."""
    problems: list[str] = []
    every = [*docs, *(context or [])]
    objects = _index(every)
    namespaces = [d["metadata"]["name"] for d in every if d["kind"] == "Namespace"]
    for doc in docs:
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] != "Namespace" and namespaces and namespace not in namespaces:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: not in {namespaces}")
    problems += _services(docs, every)
    problems += _disruption_budgets(docs, every)
    for doc, template in workloads(docs):
        where = f"{doc['kind']} {doc['metadata']['name']}"
        if doc["kind"] != "Job":
            selector = doc["spec"]["selector"]["matchLabels"]
            if not matches(selector, template["metadata"].get("labels", {})):
                problems.append(f"{where}: selector {selector} does not match its pod labels")
        problems += [f"{where}: {p}" for p in _pod(doc, template, objects, external_secrets)]
        for container in _containers(template):
            problems += [
                f"{where} container {container['name']}: {p}"
                for p in _container(
                    doc, template, container, programs, entrypoints, version, objects
                )
            ]
    problems += _collection(docs, every)
    return problems


def _containers(template: Doc) -> list[Doc]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def _services(docs: list[Doc], every: list[Doc]) -> list[str]:
    problems = []
    for service in (d for d in docs if d["kind"] == "Service"):
        name = service["metadata"]["name"]
        selector = service["spec"].get("selector", {})
        selected = [t for _, t in workloads(every) if matches(selector, t["metadata"]["labels"])]
        if not selected:
            problems.append(f"Service {name}: selector {selector} matches no pod template")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            for template in selected:
                names, numbers = container_ports(template)
                if target not in names and target not in numbers:
                    problems.append(f"Service {name}: targetPort {target} is not a pod port")
    for sts in (d for d in docs if d["kind"] == "StatefulSet"):
        service = _index(every).get(("Service", sts["spec"]["serviceName"]))
        sts_name = sts["metadata"]["name"]
        if service is None or service["spec"].get("clusterIP") != "None":
            problems.append(f"StatefulSet {sts_name}: serviceName is not a headless Service")
        elif not matches(
            service["spec"]["selector"], sts["spec"]["template"]["metadata"]["labels"]
        ):
            problems.append(f"StatefulSet {sts_name}: its Service does not select its pods")
    return problems


def _disruption_budgets(docs: list[Doc], every: list[Doc]) -> list[str]:
    problems = []
    for pdb in (d for d in docs if d["kind"] == "PodDisruptionBudget"):
        selector = pdb["spec"]["selector"]["matchLabels"]
        if not any(matches(selector, t["metadata"]["labels"]) for _, t in workloads(every)):
            problems.append(f"PodDisruptionBudget {pdb['metadata']['name']}: selects no pods")
    return problems


def _pod(doc: Doc, template: Doc, objects: dict, external_secrets: frozenset[str]) -> list[str]:
    problems = []
    spec = template["spec"]
    security = spec.get("securityContext", {})
    if security.get("runAsNonRoot") is not True or not security.get("runAsUser"):
        problems.append("pod does not run as a non-root user")
    if security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("pod lacks the RuntimeDefault seccomp profile")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for claim in doc["spec"].get("volumeClaimTemplates", []):
        volumes[claim["metadata"]["name"]] = {"persistentVolumeClaim": {"template": True}}
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            problems += _keys("Secret", name, volume["secret"].get("items"), objects)
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            problems += _keys("ConfigMap", name, volume["configMap"].get("items"), objects)
        claim = volume.get("persistentVolumeClaim", {}).get("claimName")
        if claim and ("PersistentVolumeClaim", claim) not in objects:
            problems.append(f"volume {volume['name']}: no PersistentVolumeClaim {claim}")
    for container in _containers(template):
        seen = set()
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in volumes:
                problems.append(f"{container['name']}: mounts {mount['name']}, not a volume")
            if mount["mountPath"] in seen:
                problems.append(f"{container['name']}: {mount['mountPath']} mounted twice")
            seen.add(mount["mountPath"])
        for env in container.get("env", []):
            source = env.get("valueFrom", {})
            for kind, ref in (
                ("ConfigMap", source.get("configMapKeyRef")),
                ("Secret", source.get("secretKeyRef")),
            ):
                if ref and not (kind == "Secret" and ref["name"] in external_secrets):
                    problems += _keys(kind, ref["name"], [{"key": ref["key"]}], objects)
    return problems


def _keys(kind: str, name: str, items: list[Doc] | None, objects: dict) -> list[str]:
    obj = objects.get((kind, name))
    if obj is None:
        return [f"refers to {kind} {name}, which does not exist"]
    keys = set(obj.get("data", {})) | set(obj.get("stringData", {}))
    return [f"{kind} {name} has no key {i['key']}" for i in items or [] if i["key"] not in keys]


def _mounted_files(template: Doc, container: Doc, objects: dict) -> dict[str, set[str] | None]:
    """mountPath -> the file names a Secret/ConfigMap volume shows there (None: any file)."""
    volumes = {v["name"]: v for v in template["spec"].get("volumes", [])}
    result: dict[str, set[str] | None] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        files: set[str] | None = None
        for kind, field, name_key in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
        ):
            if field in volume:
                source = volume[field]
                obj = objects.get((kind, source[name_key]), {})
                items = source.get("items")
                files = {i["path"] for i in items} if items else set(obj.get("data", {}))
        result[mount["mountPath"]] = files
    return result


def _container(
    doc: Doc,
    template: Doc,
    container: Doc,
    programs: dict[str, Program],
    entrypoints: dict[str, str],
    version: str,
    objects: dict,
) -> list[str]:
    problems = []
    mounts = _mounted_files(template, container, objects)
    image = container["image"]
    if image.rsplit(":", 1)[-1] != version:
        problems.append(f"image {image} is not version {version}")
    security = container.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if security.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("capabilities are not all dropped")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append("root filesystem is writable")
    resources = container.get("resources", {})
    if not resources.get("requests", {}).get("memory") or not resources.get("limits", {}).get(
        "memory"
    ):
        problems.append("no memory request and limit")
    env = {e["name"]: "x" for e in container.get("env", [])}
    env.update({"POD_NAME": f"{doc['metadata']['name']}-0"} if "POD_NAME" in env else {})
    names, numbers = set(), set()
    for port in container.get("ports", []):
        numbers.add(port["containerPort"])
        names.add(port.get("name"))
    for probe_name in PROBES:
        probe = container.get(probe_name)
        if probe is None:
            continue
        for kind in ("httpGet", "tcpSocket", "grpc"):
            if kind in probe and probe[kind]["port"] not in names | numbers:
                problems.append(f"{probe_name} port {probe[kind]['port']} is not a port")
        if "exec" in probe:
            problems += _command(probe["exec"]["command"], programs, mounts, numbers, probe_name)
    for variable in container.get("env", []):
        if variable["name"] in CLIENT_FILE_ENV and "value" in variable:
            problems += _on_volume(PurePosixPath(variable["value"]), mounts, variable["name"])
    command = container.get("command")
    program = command[0] if command else image_program(image, entrypoints)
    argv: list[str] = [*(command or [])[1:], *container.get("args", [])]
    expanded = []
    for value in argv:
        result, undefined = substitute(value, env)
        problems += [f"$({name}) is not defined in env" for name in undefined]
        expanded.append(result)
    if program in NOT_OURS:
        return problems
    if program is None or program not in programs:
        return [*problems, f"runs {program!r}: no known program for image {image}"]
    prog = programs[program]
    problems += prog.check_env(set(env))
    parsed, arg_problems = prog.check_args(expanded)
    problems += arg_problems
    if parsed is not None:
        problems += _paths(prog, parsed, mounts)
        refusal = start_refusal(parsed)
        if refusal:
            problems.append(f"{program} would not start: {refusal}")
        port = getattr(parsed, "port", None)
        if port is not None and port not in numbers:
            problems.append(f"--port {port} is not a container port")
    return problems


def _on_volume(path: PurePosixPath, mounts: dict[str, set[str] | None], flag: str) -> list[str]:
    for mount_path, files in mounts.items():
        mount = PurePosixPath(mount_path)
        if path == mount or mount in path.parents:
            if files is None or str(path.relative_to(mount)) in files:
                return []
            return [f"{flag} {path}: the volume at {mount} has only {sorted(files)}"]
    return [f"{flag} {path} is on no mounted volume (the root filesystem is read-only)"]


def _paths(prog: Program, parsed: Any, mounts: dict[str, set[str] | None]) -> list[str]:
    problems = []
    for flag in sorted(prog.path_flags()):
        value = getattr(parsed, flag.lstrip("-").replace("-", "_"), None)
        if value is not None:
            problems += _on_volume(PurePosixPath(str(value)), mounts, flag)
    return problems


def _command(
    command: list[str],
    programs: dict[str, Program],
    mounts: dict[str, set[str] | None],
    ports: set[int],
    where: str,
) -> list[str]:
    program = command[0]
    if program in NOT_OURS:
        return []
    if program not in programs:
        return [f"{where}: runs {program!r}, not a known program"]
    parsed, problems = programs[program].check_args(command[1:])
    if parsed is not None:
        problems += _paths(programs[program], parsed, mounts)
        address = getattr(parsed, "address", None)
        if address is not None and int(address.rsplit(":", 1)[1]) not in ports:
            problems.append(f"{shlex.join(command)} checks a port the container does not have")
    return [f"{where}: {p}" for p in problems]


def _collection(docs: list[Doc], every: list[Doc]) -> list[str]:
    """The shard list and Embedder target clients get name the StatefulSet's pods and the
    Embedder Service."""
    objects = _index(every)
    config = objects.get(("ConfigMap", "imagesim-collection"))
    if config is None or config not in docs:
        return []
    problems = []
    sts = next(d for d in every if d["kind"] == "StatefulSet")
    namespace = sts["metadata"].get("namespace", "default")
    service = objects[("Service", sts["spec"]["serviceName"])]
    port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    expected = [
        f"{sts['metadata']['name']}-{i}.{service['metadata']['name']}.{namespace}"
        f".svc.cluster.local:{port}"
        for i in range(sts["spec"]["replicas"])
    ]
    listed = config["data"]["shards"].split(",")
    if listed != expected:
        problems.append(
            f"ConfigMap imagesim-collection lists {len(listed)} shards {listed}, the "
            f"StatefulSet runs {len(expected)}: {expected}"
        )
    match = re.fullmatch(
        r"dns:///([^.]+)\.([^.]+)\.svc\.cluster\.local:(\d+)", config["data"]["embedder"]
    )
    if match is None:
        return [*problems, "embedder target is not dns:///SERVICE.NAMESPACE.svc.cluster.local:PORT"]
    embedder = objects.get(("Service", match.group(1)))
    if embedder is None or match.group(2) != namespace:
        problems.append(f"embedder target names no Service: {config['data']['embedder']}")
    elif embedder["spec"].get("clusterIP") != "None":
        problems.append("the Embedder Service is not headless: clients cannot see replicas")
    elif int(match.group(3)) not in {p["port"] for p in embedder["spec"]["ports"]}:
        problems.append(f"embedder target port {match.group(3)} is not a Service port")
    return problems
