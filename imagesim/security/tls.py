"""TLS files of a server: certificate chain, private key, and the CA of client certificates.

Read anew whenever a file changes, so a renewed certificate applies to new connections without
a restart (the gRPC server asks on every handshake, see imagesim.serving.tls; HTTP servers use
ReloadingServerContext)."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: mutual TLS, clients need a certificate it signed

    @property
    def mutual(self) -> bool:
        return self.client_ca is not None

    def paths(self) -> list[Path]:
        return [self.cert, self.key, *([self.client_ca] if self.client_ca else [])]

    def signature(self) -> tuple[tuple[int, int], ...]:
        """Changes when any of the files changes (mtime, size)."""
        signature = []
        for path in self.paths():
            st = os.stat(path)
            signature.append((st.st_mtime_ns, st.st_size))
        return tuple(signature)

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain, private key, client CA) as PEM bytes; OSError if unreadable."""
        return (
            self.cert.read_bytes(),
            self.key.read_bytes(),
            self.client_ca.read_bytes() if self.client_ca else None,
        )

    def server_context(self) -> ssl.SSLContext:
        """A stdlib server context with the same files (HTTP servers: metrics, web)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert, self.key)
        if self.client_ca is not None:
            context.load_verify_locations(cafile=self.client_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    def reloading_server_context(self) -> ReloadingServerContext:
        """Like server_context(), but every new connection gets the files as they are now."""
        return ReloadingServerContext(self)


class ReloadingServerContext(ssl.SSLContext):
    """A server context that follows its files: each new connection (asyncio's wrap_bio, or
    wrap_socket in a threaded server) looks at them (one stat each) and, when they changed,
    loads a new context for it and the ones after. A set that does not load (a key that does
    not match its certificate half-way through a renewal, a half-written file) is logged once
    and the previous context stays until the files change again. Connections already open
    keep the certificate they started with."""

    files: TlsFiles

    def __new__(cls, files: TlsFiles) -> ReloadingServerContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._lock = threading.Lock()
        self._signature = files.signature()
        self._current = files.server_context()  # unreadable files at start-up: the caller fails

    def current(self) -> ssl.SSLContext:
        """The context for a new connection."""
        try:
            signature = self.files.signature()
        except OSError as exc:  # a file removed while being replaced
            log.debug("TLS files not all there (%s): keeping the current certificates", exc)
            return self._current
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                try:
                    self._current = self.files.server_context()
                    log.info("TLS certificate files changed: new connections use them")
                except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                    log.error("keeping the current TLS certificates: %s", exc)
            return self._current

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        return self.current().wrap_bio(incoming, outgoing, server_side, server_hostname, session)

    def wrap_socket(
        self,
        sock: socket.socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        return self.current().wrap_socket(
            sock,
            server_side,
            do_handshake_on_connect,
            suppress_ragged_eofs,
            server_hostname,
            session,
        )
