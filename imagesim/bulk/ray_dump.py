"""`imagesim dump DIR --out vectors.parquet --engine ray`: bulk embedding on Ray Data.

The pipeline is Ray Data's own: `read_binary_files` reads the files, a task stage checks each
header (the same check and default metadata as the gRPC dump) and decodes it with the
Embedder's own preprocessing (embedder_server.preprocess.decode_batch), and a pool of
`actors` actors, each holding the model loaded once (OpenVINO from the IR cache, as the server
loads it), runs batches of `batch_size` images. The driver streams the results into a Parquet
dump (bulk.parquet_dump: checkpointed, atomic, resumable), so a re-run embeds only the files
the dump does not hold yet. A file that cannot be read or decoded is reported with its reason,
never fatal.

Without an address this starts a private local Ray on this machine (`address="local"`, never
an instance someone else started): CPUs as the machine has (at least actors + 1, so decoding
keeps going beside the actors), a bounded object store, no dashboard, usage statistics off, logs
kept in Ray's session directory. With an address, the same pipeline runs on that cluster, whose
nodes need `imagesim[ray]` installed and DIR at the same path (shared storage).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from imagesim import reserved
from imagesim.bulk.batch_inference import BatchModel, ModelSpec
from imagesim.bulk.common import BulkReport, image_metadata, path_key
from imagesim.bulk.parquet_dump import DumpHeader, ParquetDumpWriter
from imagesim.embedder_server.model import INPUT_SIZE, WeightsSource
from imagesim.embedder_server.preprocess import decode_batch
from imagesim.enums import Space
from imagesim.errors import FailedPrecondition, ImagesimError, InvalidArgument, Unavailable
from imagesim.images import list_images

log = logging.getLogger(__name__)

DEFAULT_OBJECT_STORE_MB = 512  # local Ray: a batch of 32 decoded images is ~8.6 MB
METADATA_FIELDS = ("file_size", "width", "height", "mtime")
# One decode task at its worst: a batch of inputs plus one image at the Embedder's decoded-size
# limit (128 MiB) with its conversion copy.
DECODE_TASK_MEMORY_MB = 512


@dataclass(frozen=True)
class RaySettings:
    address: str | None = None  # None: a private local Ray on this machine
    actors: int = 1  # model actors (each holds one loaded model)
    batch_size: int = 32  # images per model call
    cpus_per_actor: float = 1.0
    local_cpus: int | None = None  # local Ray: logical CPUs (default: the machine's)
    object_store_mb: int = DEFAULT_OBJECT_STORE_MB  # local Ray's shared-memory object store


def import_ray() -> Any:
    """`import ray` with its usage statistics off (read when a local Ray starts);
    ImportError when the extra is not installed."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    import ray.data

    return ray


def quiet_console(name: str) -> None:
    """Only errors of the logger `name` on Ray's console handler; its log files keep everything
    (Ray Data writes ray-data.log in the Ray session's directory). Handlers that are not Ray's
    own are left alone: Ray Data can list the application's root handlers on its logger, and
    raising their level would silence the application's own warnings."""
    for handler in logging.getLogger(name).handlers:
        if (
            type(handler).__module__.startswith("ray.")
            and isinstance(handler, logging.StreamHandler)
            and not isinstance(handler, logging.FileHandler)
        ):
            handler.setLevel(logging.ERROR)


@contextmanager
def ray_session(settings: RaySettings) -> Iterator[Any]:
    """Ray connected (to `settings.address`) or started locally; shut down afterwards."""
    ray = import_ray()
    common: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "include_dashboard": False,
    }
    try:
        if settings.address:
            ray.init(address=settings.address, **common)
        else:
            cpus = settings.local_cpus or os.cpu_count() or 1
            ray.init(
                address="local",
                num_cpus=max(cpus, int(settings.actors * settings.cpus_per_actor) + 1),
                object_store_memory=settings.object_store_mb * 1024 * 1024,
                **common,
            )
    except Exception as exc:  # Ray raises plain exceptions (e.g. a raylet that never came up)
        where = f"connect to Ray at {settings.address}" if settings.address else "start a local Ray"
        raise Unavailable(f"could not {where}: {exc}") from exc
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the dump has its own
        context.print_on_execution_start = False
        quiet_console("ray.data")
        yield ray
    finally:
        ray.shutdown()


def key_of(path: str, root: str, folder: str) -> str:
    """The dump key of an absolute `path` under `root` (the absolute form of `folder`): the
    path as list_images spells it, i.e. as the user gave the folder (the gRPC dump's keys)."""
    return str(Path(folder) / os.path.relpath(path, root))


def decode_rows(batch: dict[str, Any], root: str, folder: str) -> dict[str, Any]:
    """Ray Data task stage: read rows ("bytes", "path") -> "key", the decoded "pixels", the
    per-row "error" and the default metadata columns."""
    keys = [key_of(str(p), root, folder) for p in batch["path"]]
    images: list[bytes] = []
    errors: list[str] = []
    metadata: dict[str, list[str]] = {name: [] for name in METADATA_FIELDS}
    for data, path in zip(batch["bytes"], batch["path"], strict=True):
        try:
            meta = image_metadata(bytes(data), os.stat(path).st_mtime)
            errors.append("")
        except (ValueError, OSError) as exc:
            meta = dict.fromkeys(METADATA_FIELDS, "")
            errors.append(str(exc))
        images.append(bytes(data) if not errors[-1] else b"")
        for name in METADATA_FIELDS:
            metadata[name].append(meta[name])
    pixels, decode_errors = decode_batch(images, INPUT_SIZE)
    return {
        "key": np.array(keys, dtype=object),
        "pixels": pixels,
        "error": np.array([e or d for e, d in zip(errors, decode_errors, strict=True)], object),
        **{name: np.array(values, dtype=object) for name, values in metadata.items()},
    }


def _header(batch: dict[str, Any], space: Space) -> DumpHeader:
    """The batch's model identity; FailedPrecondition if its rows disagree (actors running
    different models or precisions, e.g. precision auto on a mixed cluster)."""
    identities = {
        (str(f), str(r), str(p))
        for f, r, p in zip(batch["fingerprint"], batch["runtime"], batch["precision"], strict=True)
    }
    if len(identities) != 1:
        raise FailedPrecondition(
            f"the actors run different models or precisions ({sorted(identities)}): pin "
            "--runtime and --precision"
        )
    [(fingerprint, runtime, precision)] = identities
    return DumpHeader(fingerprint, space.value, runtime, precision, batch["vector"].shape[1])


def check_weights(model: ModelSpec, local: bool) -> None:
    """Fail here, before Ray starts, when the actors could not get their weights: a missing
    weights file, or (local Ray) ImageNet weights that cannot be downloaded. Otherwise every
    actor fails on its own and Ray prints each one's traceback before the error.

    On a local Ray the ImageNet weights are fetched here once, into the cache the actors
    read; a cluster's nodes fetch their own, so only a given file is checked there (it must
    be at the same path on every node, like DIR)."""
    source = WeightsSource(model.weights)
    if local:
        source.file()  # WeightsUnavailable says how to fix it
    else:
        source.local_file()


def ray_dump(
    folder: Path,
    out: Path,
    model: ModelSpec,
    settings: RaySettings,
    space: Space = Space.FULL,
    progress: bool = True,
) -> tuple[ParquetDumpWriter, BulkReport]:
    """Embed the images under `folder` not yet in the Parquet dump `out` on Ray Data; returns
    the finished writer (total rows, header) and this run's report."""
    if Space(space) is not Space.FULL:
        raise InvalidArgument(
            "the Ray engine makes full-space vectors; reduce them afterwards, or dump the "
            "reduced space with --engine grpc from an embedder started with --reducer"
        )
    if settings.actors < 1 or settings.batch_size < 1:
        raise InvalidArgument("--actors and --batch-size must be at least 1")
    started = time.monotonic()
    writer = ParquetDumpWriter(out)
    report = BulkReport(already=len(writer.known))
    folder_text = str(folder)
    root = os.path.abspath(folder_text)
    todo: dict[str, str] = {}  # absolute path -> key, for every file still to embed
    for path in list_images(folder):
        try:
            key = path_key(path)
        except ValueError as exc:
            report.failed.append((os.fsencode(path).decode("utf-8", "backslashreplace"), str(exc)))
            continue
        if key not in writer.known:
            todo[os.path.join(root, os.path.relpath(path, folder_text))] = key
    if todo:
        check_weights(model, local=settings.address is None)
        if settings.address is None and model.model_cache is None:
            # the actors of a local Ray share this process's IR cache
            from imagesim.embedder_server.runtimes.select import default_model_cache

            model = replace(model, model_cache=str(default_model_cache()))
        with ray_session(settings) as ray:
            _run(ray, todo, root, folder_text, model, settings, space, writer, report, progress)
    writer.finish()
    report.seconds = time.monotonic() - started
    return writer, report


def _run(
    ray: Any,
    todo: dict[str, str],
    root: str,
    folder: str,
    model: ModelSpec,
    settings: RaySettings,
    space: Space,
    writer: ParquetDumpWriter,
    report: BulkReport,
    progress: bool,
) -> None:
    from tqdm import tqdm

    vectors = (
        ray.data.read_binary_files(list(todo), include_paths=True, ignore_missing_paths=True)
        .map_batches(
            decode_rows,
            batch_size=settings.batch_size,
            batch_format="numpy",
            fn_kwargs={"root": root, "folder": folder},
            # Each decode task reserves Ray memory for its worst case, as the server's decode
            # budget does; the reservation also keeps decoding in tasks of its own (Ray fuses
            # stages with equal resources), so the actors only run the model.
            memory=DECODE_TASK_MEMORY_MB * 1024 * 1024,
        )
        .map_batches(
            BatchModel,
            batch_size=settings.batch_size,
            batch_format="numpy",
            fn_constructor_kwargs={"spec": model},
            compute=ray.data.ActorPoolStrategy(size=settings.actors),
            num_cpus=settings.cpus_per_actor,
        )
    )
    missing = set(todo.values())
    bar = tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True)
    try:
        for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
            header = _header(batch, space)
            writer.start(header)
            made_by = reserved.model_tags(
                header.model_fingerprint, header.runtime, header.precision
            )
            for n, key in enumerate(batch["key"]):
                key = str(key)
                missing.discard(key)
                bar.update(1)
                if batch["error"][n]:
                    report.failed.append((key, str(batch["error"][n])))
                    continue
                # the same reserved tags as the gRPC dump, so both engines' rows are equal
                meta = {name: str(batch[name][n]) for name in METADATA_FIELDS} | made_by
                writer.add(key, batch["vector"][n], meta)
                report.done += 1
    except ImagesimError:
        raise
    except Exception as exc:  # a Ray task or actor failed past its retries
        raise FailedPrecondition(f"the Ray pipeline failed: {type(exc).__name__}: {exc}") from exc
    finally:
        bar.close()
        writer.checkpoint()  # what was embedded is kept, even if the run failed
    for key in sorted(missing):
        report.failed.append((key, "the file disappeared before Ray read it"))
