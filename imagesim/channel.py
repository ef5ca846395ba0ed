"""gRPC channel options shared by servers and clients (message limits, retries, security)."""

from __future__ import annotations

import collections
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import grpc

MiB = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 * MiB
RECONNECT_BACKOFF_MAX_MS = 2000

# Transport-level retries for calls that are safe to repeat (keyed adds replace, reads read).
_RETRY_POLICY = {
    "maxAttempts": 3,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE"],
}
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [
                    {"service": "imagesim.v1.Embedder", "method": "Embed"},
                    {"service": "imagesim.v1.Embedder", "method": "Info"},
                    {"service": "imagesim.v1.Index", "method": "Add"},
                    {"service": "imagesim.v1.Index", "method": "Remove"},
                    {"service": "imagesim.v1.Index", "method": "Search"},
                    {"service": "imagesim.v1.Index", "method": "Get"},
                    {"service": "imagesim.v1.Index", "method": "Stats"},
                ],
                "retryPolicy": _RETRY_POLICY,
            }
        ]
    }
)


def message_limits(max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Explicit send/receive limits; servers and clients use the same ones."""
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]


@dataclass(frozen=True)
class ChannelSecurity:
    """How a client proves the server is the right one and who the client is.

    TLS is on when `tls` is set or any TLS file is given: `tls_ca` is the CA that signed the
    server's certificate (None: the system's trusted CAs); `tls_cert`/`tls_key` are the
    client's own certificate for servers that require mutual TLS. `api_key` goes with every
    call as `authorization: Bearer KEY`; without TLS the channel connects to loopback
    addresses only (gRPC local credentials), so a key never crosses a network in plaintext.
    `tls_server_name` overrides the name checked in the server's certificate (e.g. connecting
    by IP to a certificate for a name).
    """

    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    api_key: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_server_name: str | None = None

    @property
    def uses_tls(self) -> bool:
        return self.tls or any(p is not None for p in (self.tls_ca, self.tls_cert, self.tls_key))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ChannelSecurity:
        """IMAGESIM_TLS_CA, IMAGESIM_TLS_CERT, IMAGESIM_TLS_KEY, IMAGESIM_API_KEY,
        IMAGESIM_TLS_SERVER_NAME (unset or empty: not used)."""
        env = os.environ if environ is None else environ

        def path(name: str) -> Path | None:
            value = env.get(name, "").strip()
            return Path(value) if value else None

        return cls(
            tls_ca=path("IMAGESIM_TLS_CA"),
            tls_cert=path("IMAGESIM_TLS_CERT"),
            tls_key=path("IMAGESIM_TLS_KEY"),
            api_key=env.get("IMAGESIM_API_KEY", "").strip() or None,
            tls_server_name=env.get("IMAGESIM_TLS_SERVER_NAME", "").strip() or None,
        )

    def credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials (None: a plain insecure channel)."""
        if self.uses_tls:
            if (self.tls_cert is None) != (self.tls_key is None):
                raise ValueError("a client certificate needs both tls_cert and tls_key")
            try:
                channel = grpc.ssl_channel_credentials(
                    root_certificates=self.tls_ca.read_bytes() if self.tls_ca else None,
                    private_key=self.tls_key.read_bytes() if self.tls_key else None,
                    certificate_chain=self.tls_cert.read_bytes() if self.tls_cert else None,
                )
            except OSError as exc:
                raise ValueError(f"cannot read a TLS file: {exc}") from None
            return channel
        if self.api_key:
            # A key without TLS: gRPC's local credentials connect to loopback addresses only,
            # so the key never crosses a network in plaintext.
            return grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        return None


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class BearerKey(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer KEY` to every call. (grpc.access_token_call_credentials
    does the same through a plugin that runs on another thread per call: +0.24 ms per call
    measured on loopback, 40% of a Stats round trip; this costs nothing measurable.)"""

    def __init__(self, key: str) -> None:
        self._header = ("authorization", f"Bearer {key}")

    def __repr__(self) -> str:
        return "BearerKey(...)"

    def _details(self, details: grpc.ClientCallDetails) -> _CallDetails:
        return _CallDetails(
            details.method,
            details.timeout,
            [*(details.metadata or ()), self._header],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


def open_channel(
    address: str,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    security: ChannelSecurity | None = None,
) -> grpc.Channel:
    """The one way the client opens a channel: limits, retry policy, TLS and API key.
    `security` None: ChannelSecurity.from_env()."""
    security = ChannelSecurity.from_env() if security is None else security
    options: list[tuple[str, object]] = [
        *message_limits(max_message_bytes),
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        # A restarted server is reached again within seconds (gRPC's default backoff grows
        # to two minutes after refused connections).
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    if security.tls_server_name:
        options.append(("grpc.ssl_target_name_override", security.tls_server_name))
    credentials = security.credentials()
    if credentials is None:
        return grpc.insecure_channel(address, options=options)
    channel = grpc.secure_channel(address, credentials, options=options)
    if security.api_key:
        channel = grpc.intercept_channel(channel, BearerKey(security.api_key))
    return channel
