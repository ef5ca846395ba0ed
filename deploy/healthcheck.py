#!/usr/bin/env python3
"""`imagesim-health`: is an imagesim server serving? Exit 0 if so, 1 if not (one line says why).

    imagesim-health grpc HOST:PORT [--service NAME] [--tls-ca FILE] [--tls-server-name NAME]
                    [--tls-client-cert FILE --tls-client-key FILE] [--timeout S]
    imagesim-health http URL [--timeout S]

`grpc` asks the standard health service (grpc.health.v1.Health/Check; the empty service name
is the whole server, which every imagesim server reports) over TLS when a CA or client
certificate is given, else in plaintext. The health service needs no API key. `http` expects a
2xx answer (imagesim-web's /healthz).

Kubernetes' own `grpc:` probe connects without TLS (a `mode: TLS` field only arrives with
Kubernetes 1.37), and compose has no gRPC check at all: the images ship this script as
/usr/local/bin/imagesim-health for exec probes and compose health checks. Unset TLS flags fall
back to the client's variables (IMAGESIM_TLS_CA, IMAGESIM_TLS_CLIENT_CERT,
IMAGESIM_TLS_CLIENT_KEY, IMAGESIM_TLS_SERVER_NAME; docs/settings.md).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path


def check_grpc(args: argparse.Namespace) -> str | None:
    """None when SERVING, else what is wrong."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from imagesim.channel import ChannelSecurity, open_channel

    security = ChannelSecurity.from_env()
    overrides = {
        "tls_ca": args.tls_ca,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_server_name": args.tls_server_name,
    }
    security = replace(
        security, api_key=None, **{k: v for k, v in overrides.items() if v is not None}
    )
    try:
        channel = open_channel(args.address, security=security)
    except ValueError as exc:  # an unreadable TLS file
        return str(exc)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return None


def check_http(args: argparse.Namespace) -> str | None:
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    return None if 200 <= status < 300 else f"HTTP {status}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="imagesim-health", description="Exit 0 if an imagesim server is serving."
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    grpc_check = kinds.add_parser("grpc", help="gRPC health service (embedder, index)")
    grpc_check.add_argument("address", help="HOST:PORT or a gRPC target")
    grpc_check.add_argument("--service", default="", help="service name (default: the server)")
    grpc_check.add_argument("--tls-ca", type=Path, help="CA of the server certificate (PEM)")
    grpc_check.add_argument(  # --tls-cert: the old, deprecated spelling
        "--tls-client-cert", "--tls-cert", dest="tls_cert", type=Path,
        help="client certificate (mutual TLS)",
    )  # fmt: skip
    grpc_check.add_argument(
        "--tls-client-key", "--tls-key", dest="tls_key", type=Path, help="client key (mutual TLS)"
    )
    grpc_check.add_argument("--tls-server-name", help="name to check in the server certificate")
    http_check = kinds.add_parser("http", help="an HTTP URL answering 2xx (imagesim-web)")
    http_check.add_argument("url")
    for sub in (grpc_check, http_check):
        sub.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem = check_grpc(args) if args.kind == "grpc" else check_http(args)
    target = args.address if args.kind == "grpc" else args.url
    if problem is not None:
        print(f"imagesim-health: {target}: {problem}", file=sys.stderr)
        return 1
    print(f"{target}: SERVING")
    return 0


if __name__ == "__main__":
    sys.exit(main())
