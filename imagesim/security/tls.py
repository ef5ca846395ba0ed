"""TLS files of a server: certificate chain, private key, and the CA of client certificates.

Read anew whenever a file changes, so a renewed certificate applies to new connections without
a restart (the gRPC server asks on every handshake; see imagesim.serving.tls)."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path


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
