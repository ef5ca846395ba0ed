"""gRPC server credentials from TlsFiles, re-read when the files change (no restart)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import grpc

from imagesim.security import TlsFiles

log = logging.getLogger(__name__)


def _configuration(files: TlsFiles) -> grpc.ServerCertificateConfiguration:
    chain, key, client_ca = files.read()
    return grpc.ssl_server_certificate_configuration([(key, chain)], client_ca)


class _Reloader:
    """grpc calls this on every TLS handshake: a new configuration when the files changed,
    None to keep the current one. A half-written or broken file keeps the current one."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._signature = files.signature()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            signature = self.files.signature()
            with self._lock:
                if signature == self._signature:
                    return None
                configuration = _configuration(self.files)
                self._signature = signature
            log.info("TLS certificate files changed: new connections use them")
            return configuration
        except Exception as exc:  # grpc would only log a bare traceback
            log.error("keeping the current TLS certificates: %s", exc)
            return None


def server_credentials(files: TlsFiles) -> grpc.ServerCredentials:
    """TLS (mutual when files.client_ca is set: clients without a certificate signed by it are
    refused during the handshake)."""
    try:
        initial = _configuration(files)
    except OSError as exc:
        raise SystemExit(f"cannot read TLS files: {exc}") from None
    # grpc documents a fetcher returning None as "keep the current configuration"; its type
    # stub does not allow None.
    fetcher: Callable[[], grpc.ServerCertificateConfiguration] = _Reloader(files)  # type: ignore[assignment]
    return grpc.dynamic_ssl_server_credentials(
        initial, fetcher, require_client_authentication=files.mutual
    )
