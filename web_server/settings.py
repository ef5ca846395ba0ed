"""`imagesim-web` settings: every flag also read from the environment (IMAGESIM_WEB_...), like
the other servers' flags; a flag given on the command line wins."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from imagesim.client.duplicates import DEFAULT_MAX_DISTANCE
from imagesim.security import TlsFiles, check_exposure, is_loopback
from imagesim.serving.settings import EnvFlags, add_security_flags, refuse, tls_files
from imagesim.types import MiB
from imagesim.version import add_version_flag

PROG = "imagesim-web"
ENV_PREFIX = "IMAGESIM_WEB_"
DEFAULT_PORT = 8080
LOOPBACK_HOST_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class WebSettings:
    """What one imagesim-web process serves and the limits it keeps."""

    embedder: str
    shards: tuple[str, ...]
    images_root: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    port_file: Path | None = None
    grace_seconds: float = 10.0
    log_level: str = "INFO"
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOST_NAMES
    timeout: float = 30.0  # one deadline for all backend calls of one request
    default_k: int = 12
    max_k: int = 100
    max_upload_bytes: int = 0  # 0: the embedder's limit (a smaller value lowers it)
    upload_timeout: float = 30.0  # the whole upload body must arrive within this
    max_uploads: int = 4  # uploads received or searched at once; more get 503
    max_connections: int = 128  # connections and tasks at once; more get 503 (uvicorn)
    thumbnail_size: int = 256
    thumbnail_cache_bytes: int = 64 * MiB
    thumbnail_workers: int = 2  # pictures decoded at once
    duplicates_distance: float = DEFAULT_MAX_DISTANCE
    duplicates_neighbours: int = 10
    duplicates_wait: float = 10.0  # how long a request waits for a running computation
    tls: TlsFiles | None = None  # None: plain HTTP
    api_keys: Path | None = None  # `ROLE KEY` file; None: no key needed
    insecure: bool = False  # allow a non-loopback bind without TLS and authentication
    metrics_port: int | None = None  # Prometheus /metrics; None = off, 0 = any free port
    quarantine: Path | None = None  # where the duplicates page moves files; None: no apply

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def exposure_problem(self) -> str | None:
        """Why serving on this host is refused (the gRPC servers' rule), or None."""
        return check_exposure(
            self.host,
            tls=self.tls is not None,
            authenticated=self.api_keys is not None or (self.tls is not None and self.tls.mutual),
            insecure=self.insecure,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Web page and HTTP/JSON API over an imagesim Embedder and Index shards: "
        "search by image, more like this, near-duplicate groups, thumbnails.",
    )
    add_version_flag(parser)
    services = EnvFlags(parser.add_argument_group("services"), ENV_PREFIX)
    services.add("--embedder", "127.0.0.1:50051", "Embedder HOST:PORT (default 127.0.0.1:50051)")
    services.add(
        "--shards",
        "127.0.0.1:50061",
        "Index shards, HOST:PORT[,HOST:PORT...], every shard of the collection (default "
        "127.0.0.1:50061)",
    )
    services.add(
        "--images-root",
        None,
        "folder of the indexed image files: thumbnails are made from files under it only "
        "(relative keys are read under it, absolute keys only if they lie in it)",
        type=Path,
        required=True,
    )
    services.add(
        "--quarantine",
        None,
        "folder the duplicates page's 'Move to quarantine' moves files into (with the "
        "manifest that undoes it: imagesim undo); outside --images-root; default: none, the "
        "page only downloads plans",
        type=Path,
    )
    services.add(
        "--timeout",
        30.0,
        "deadline of one request's backend calls, seconds (default 30)",
        type=float,
    )
    server = EnvFlags(parser.add_argument_group("server"), ENV_PREFIX)
    server.add("--host", "127.0.0.1", "address to bind (default 127.0.0.1)")
    server.add(
        "--port", DEFAULT_PORT, f"port, 0 for any free one (default {DEFAULT_PORT})", type=int
    )
    server.add(
        "--port-file",
        None,
        'after binding, write {"host", "port", "pid"} as JSON here (atomically)',
        type=Path,
    )
    server.add(
        "--allowed-hosts",
        "",
        "Host header values accepted, comma-separated (default: loopback names when bound to "
        "loopback, which stops DNS-rebinding pages from reading the API; any otherwise)",
    )
    server.add(
        "--grace",
        10.0,
        "seconds in-flight requests may finish on SIGTERM/SIGINT (default 10)",
        type=float,
    )
    server.add("--log-level", "INFO", "log level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    server.add(
        "--metrics-port",
        None,
        "serve Prometheus metrics at http://HOST:PORT/metrics (same host, TLS and API keys as "
        "the web server; 0 = any free port; default off)",
        type=int,
    )
    add_security_flags(parser, ENV_PREFIX, reflection=False)
    limits = EnvFlags(parser.add_argument_group("limits"), ENV_PREFIX)
    limits.add("--max-k", 100, "most results one search may ask for (default 100)", type=int)
    limits.add(
        "--max-upload-mb",
        0.0,
        "largest upload, MiB (default 0: the embedder's limit; a value can only lower it)",
        type=float,
    )
    limits.add(
        "--upload-timeout",
        30.0,
        "seconds an upload may take to arrive; slower ones get 408 (default 30)",
        type=float,
    )
    limits.add("--max-uploads", 4, "uploads handled at once; more get 503 (default 4)", type=int)
    limits.add(
        "--max-connections",
        128,
        "connections and requests at once; more get 503 (default 128)",
        type=int,
    )
    limits.add("--thumbnail-size", 256, "thumbnail box, pixels (default 256)", type=int)
    limits.add(
        "--thumbnail-cache-mb", 64.0, "memory for cached thumbnails, MiB (default 64)", type=float
    )
    limits.add(
        "--thumbnail-workers", 2, "image files decoded at once for thumbnails (default 2)", type=int
    )
    limits.add(
        "--duplicates-distance",
        DEFAULT_MAX_DISTANCE,
        f"default threshold of the duplicates page (default {DEFAULT_MAX_DISTANCE})",
        type=float,
    )
    limits.add(
        "--duplicates-neighbours",
        10,
        "nearest items each item is compared with when finding duplicates (default 10)",
        type=int,
    )
    limits.add(
        "--duplicates-wait",
        10.0,
        "seconds a duplicates request waits for the computation before answering 202 (default 10)",
        type=float,
    )
    return parser


def parse_args(argv: list[str] | None = None) -> WebSettings:
    parser = build_parser()
    args = parser.parse_args(argv)
    shards = tuple(s.strip() for s in args.shards.split(",") if s.strip())
    if not shards:
        parser.error("--shards needs at least one HOST:PORT")
    if not args.images_root.is_dir():
        parser.error(f"--images-root {args.images_root} is not a directory")
    if args.quarantine is not None and not args.quarantine.is_dir():
        parser.error(f"--quarantine {args.quarantine} is not a directory")
    positive = {
        "--max-k": args.max_k,
        "--upload-timeout": args.upload_timeout,
        "--max-uploads": args.max_uploads,
        "--max-connections": args.max_connections,
        "--thumbnail-size": args.thumbnail_size,
        "--thumbnail-workers": args.thumbnail_workers,
        "--duplicates-neighbours": args.duplicates_neighbours,
        "--timeout": args.timeout,
    }
    for flag, value in positive.items():
        if value <= 0:
            parser.error(f"{flag} must be positive, not {value}")
    if args.thumbnail_size > 1024:
        parser.error("--thumbnail-size is at most 1024")
    allowed = tuple(h.strip() for h in args.allowed_hosts.split(",") if h.strip())
    if not allowed:
        allowed = LOOPBACK_HOST_NAMES if is_loopback(args.host) else ("*",)
    settings = WebSettings(
        embedder=args.embedder,
        shards=shards,
        images_root=args.images_root,
        host=args.host,
        port=args.port,
        port_file=args.port_file,
        grace_seconds=args.grace,
        log_level=args.log_level,
        allowed_hosts=allowed,
        timeout=args.timeout,
        max_k=args.max_k,
        default_k=min(12, args.max_k),
        max_upload_bytes=int(args.max_upload_mb * MiB),
        upload_timeout=args.upload_timeout,
        max_uploads=args.max_uploads,
        max_connections=args.max_connections,
        thumbnail_size=args.thumbnail_size,
        thumbnail_cache_bytes=int(args.thumbnail_cache_mb * MiB),
        thumbnail_workers=args.thumbnail_workers,
        duplicates_distance=args.duplicates_distance,
        duplicates_neighbours=args.duplicates_neighbours,
        duplicates_wait=args.duplicates_wait,
        tls=tls_files(args, PROG),
        api_keys=args.api_keys,
        insecure=args.insecure,
        metrics_port=args.metrics_port,
        quarantine=args.quarantine,
    )
    problem = settings.exposure_problem()
    if problem:
        refuse(problem, PROG)  # before binding or reading anything
    return settings
