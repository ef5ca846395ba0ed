"""gRPC channel options shared by servers and clients (message limits, retries)."""

from __future__ import annotations

import json

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


def open_channel(address: str, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> grpc.Channel:
    """The one way the client opens a channel: limits, retry policy, insecure loopback/LAN."""
    options: list[tuple[str, object]] = [
        *message_limits(max_message_bytes),
        ("grpc.service_config", SERVICE_CONFIG),
        ("grpc.enable_retries", 1),
        # A restarted server is reached again within seconds (gRPC's default backoff grows
        # to two minutes after refused connections).
        ("grpc.initial_reconnect_backoff_ms", 250),
        ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MAX_MS),
    ]
    return grpc.insecure_channel(address, options=options)
