"""`imagesim-web` settings: every flag also read from the environment (IMAGESIM_WEB_...), like
the other servers' flags; a flag given on the command line wins. Its calls to the services take
their TLS and key from the client's variables (IMAGESIM_TLS_CA, IMAGESIM_API_KEY, ...), read
once into WebSettings.backend."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagesim.channel import ChannelSecurity, Services, addresses
from imagesim.client.duplicates import DEFAULT_MAX_DISTANCE
from imagesim.limits import MiB
from imagesim.security import is_loopback
from imagesim.serving.settings import LOG_LEVELS, SecuritySettings, refuse
from imagesim.settings_base import NOT_FLAGS, add_arguments, from_args, setting
from imagesim.version import add_version_flag

PROG = "imagesim-web"
ENV_PREFIX = "IMAGESIM_WEB_"
DEFAULT_PORT = 8080
LOOPBACK_HOST_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
POSITIVE = (  # settings that must be above 0
    "max_k",
    "upload_timeout",
    "max_uploads",
    "max_connections",
    "thumbnail_size",
    "thumbnail_workers",
    "duplicates_neighbors",
    "timeout",
)


@dataclass(frozen=True, kw_only=True)
class WebSettings(SecuritySettings, Services):
    """What one imagesim-web process serves and the limits it keeps, declared once
    (imagesim.settings_base): each field is a flag and an IMAGESIM_WEB_* variable."""

    images_root: Path = setting(
        help="folder of the indexed image files: thumbnails are made from files under it only "
        "(relative keys are read under it, absolute keys only if they lie in it)"
    )
    quarantine: Path | None = setting(  # None: no apply
        None,
        "folder the duplicates page's 'Move to quarantine' moves files into (with the "
        "manifest that undoes it: imagesim undo); outside --images-root",
        default_text="none, the page only downloads plans",
    )
    timeout: float = setting(  # one deadline for all backend calls of one request
        30.0, "deadline of one request's backend calls, seconds"
    )
    host: str = setting("127.0.0.1", "address to bind", group="server")
    port: int = setting(DEFAULT_PORT, "port, 0 for any free one", group="server")
    port_file: Path | None = setting(
        None,
        'after binding, write {"host", "port", "pid"} as JSON here (atomically)',
        group="server",
    )
    allowed_hosts: tuple[str, ...] = setting(  # (): decided by the host (parse_args)
        (),
        "Host header values accepted, comma-separated",
        parse=addresses,
        default_text="loopback names when bound to loopback, which stops DNS-rebinding pages "
        "from reading the API; any otherwise",
        group="server",
    )
    grace_seconds: float = setting(
        10.0,
        "seconds in-flight requests may finish on SIGTERM/SIGINT",
        flag="--grace",
        group="server",
    )
    log_level: str = setting("INFO", "log level", choices=LOG_LEVELS, group="server")
    metrics_port: int | None = setting(  # None = off, 0 = any free port
        None,
        "serve Prometheus metrics at http://HOST:PORT/metrics (same host, TLS and API keys as "
        "the web server; 0 = any free port)",
        default_text="off",
        group="server",
    )
    max_k: int = setting(100, "most results one search may ask for", group="limits")
    max_upload_bytes: int = setting(  # 0: the embedder's limit (a smaller value lowers it)
        0,
        "largest upload, MiB (0: the embedder's limit; a value can only lower it)",
        flag="--max-upload-mb",
        scale=MiB,
        group="limits",
    )
    upload_timeout: float = setting(
        30.0, "seconds an upload may take to arrive; slower ones get 408", group="limits"
    )
    max_uploads: int = setting(4, "uploads handled at once; more get 503", group="limits")
    max_connections: int = setting(  # connections and tasks at once (uvicorn)
        128, "connections and requests at once; more get 503", group="limits"
    )
    thumbnail_size: int = setting(256, "thumbnail box, pixels", group="limits")
    thumbnail_cache_bytes: int = setting(
        64 * MiB,
        "memory for cached thumbnails, MiB",
        flag="--thumbnail-cache-mb",
        scale=MiB,
        group="limits",
    )
    thumbnail_workers: int = setting(
        2, "image files decoded at once for thumbnails", group="limits"
    )
    duplicates_distance: float = setting(
        DEFAULT_MAX_DISTANCE, "default threshold of the duplicates page", group="limits"
    )
    duplicates_neighbors: int = setting(
        10,
        "nearest items each item is compared with when finding duplicates",
        group="limits",
        old_flags=("--duplicates-neighbours",),
        old_env=("IMAGESIM_WEB_DUPLICATES_NEIGHBOURS",),
    )
    duplicates_wait: float = setting(
        10.0,
        "seconds a duplicates request waits for the computation before answering 202",
        group="limits",
    )
    # TLS and key of the calls to the Embedder and shards: the client's variables
    # (IMAGESIM_TLS_CA, IMAGESIM_API_KEY, ...), read by parse_args
    backend: ChannelSecurity = field(default_factory=ChannelSecurity, metadata=NOT_FLAGS)

    @property
    def default_k(self) -> int:
        return min(12, self.max_k)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Web page and HTTP/JSON API over an imagesim Embedder and Index shards: "
        "search by image, more like this, near-duplicate groups, thumbnails.",
    )
    add_version_flag(parser)
    for title in ("services", "server"):  # before security in --help
        parser.add_argument_group(title)
    add_arguments(parser, WebSettings, ENV_PREFIX, "services")
    return parser


def parse_args(argv: list[str] | None = None) -> WebSettings:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = from_args(WebSettings, args, backend=ChannelSecurity.from_env())
    if not settings.shards:
        parser.error("--shards needs at least one HOST:PORT")
    if not settings.images_root.is_dir():
        parser.error(f"--images-root {settings.images_root} is not a directory")
    if settings.quarantine is not None and not settings.quarantine.is_dir():
        parser.error(f"--quarantine {settings.quarantine} is not a directory")
    for name in POSITIVE:
        value = getattr(settings, name)
        if value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, not {value}")
    if settings.thumbnail_size > 1024:
        parser.error("--thumbnail-size is at most 1024")
    if not settings.allowed_hosts:
        loopback = is_loopback(settings.host)
        settings = replace(settings, allowed_hosts=LOOPBACK_HOST_NAMES if loopback else ("*",))
    problems = settings.security_problems(settings.host)
    if problems:
        refuse(problems[0], PROG)  # before binding or reading anything
    return settings
