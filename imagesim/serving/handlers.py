"""Wrapping a gRPC method handler's behaviour while keeping its kind and (de)serializers:
the one helper every server interceptor here (auth, stream limits, metrics) builds on."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]
# Given a handler's behaviour and whether it streams (requests, responses), the new behaviour.
Wrap = Callable[[Behavior, bool, bool], Behavior]

_FACTORIES = {
    (False, False): (grpc.unary_unary_rpc_method_handler, "unary_unary"),
    (False, True): (grpc.unary_stream_rpc_method_handler, "unary_stream"),
    (True, False): (grpc.stream_unary_rpc_method_handler, "stream_unary"),
    (True, True): (grpc.stream_stream_rpc_method_handler, "stream_stream"),
}


def rpc_type(handler: grpc.RpcMethodHandler) -> str:
    """unary_unary, unary_stream, stream_unary or stream_stream."""
    return _FACTORIES[(handler.request_streaming, handler.response_streaming)][1]


def wrap_handler(
    handler: grpc.RpcMethodHandler,
    wrap: Wrap,
    deserialize: bool = True,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The same kind of handler with its behaviour replaced by `wrap(behaviour, ...)`.

    deserialize=False hands the behaviour raw request bytes (a call about to be refused
    should not cost the server a parse of a large message); `request_deserializer` replaces
    the handler's own."""
    streams = (handler.request_streaming, handler.response_streaming)
    factory, attribute = _FACTORIES[streams]
    behavior = getattr(handler, attribute)
    if not deserialize:
        request_deserializer = None
    elif request_deserializer is None:
        request_deserializer = handler.request_deserializer
    return factory(
        wrap(behavior, *streams),
        request_deserializer=request_deserializer,
        response_serializer=handler.response_serializer,
    )


def metadata_value(metadata: Sequence[tuple[str, Any]] | Mapping | None, key: str) -> Any:
    """The first value of `key` in call metadata (None if absent)."""
    for item in metadata or ():
        if item[0] == key:
            return item[1]
    return None
