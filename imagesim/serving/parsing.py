"""A request that does not parse is the caller's fault: INVALID_ARGUMENT, reason
MALFORMED_REQUEST, and at most one log line a minute, on every method of a server (ours,
health, reflection; with or without a key).

Left to itself, gRPC Python logs "Exception deserializing message!" with a traceback (6 lines)
and answers INTERNAL: 20 garbage calls to the keyless health Check wrote 120 lines. Here each
handler's request deserializer is wrapped so that a parse error becomes a `Malformed` marker
(gRPC never sees an exception), and the handler's behaviour turns the marker into the status.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import grpc

from imagesim.errors import Reason
from imagesim.serving.errors import abort, rich_status
from imagesim.serving.handlers import Behavior, wrap_handler

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds between two log lines about malformed requests
_MAX_DETAIL = 200  # characters of the parser's message sent back


class Malformed:
    """What the wrapped deserializer returns for bytes that do not parse."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def tolerant(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    """`deserializer` returning Malformed instead of raising."""

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:
            return Malformed(str(exc) or type(exc).__name__)

    return parse


class RateLimitedLog:
    """Logs one warning per `interval` seconds and counts the ones it left out."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._skipped = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._skipped += 1
                return
            skipped, self._skipped, self._next = self._skipped, 0, now + self.interval
        more = f" ({skipped} more since the last such line)" if skipped else ""
        log.warning(message + "%s", *args, more)


class RequestParsing(grpc.ServerInterceptor):
    """Malformed requests get INVALID_ARGUMENT (MALFORMED_REQUEST), logged at most once a
    minute. Put it after the API-key check (a refused call's request is never parsed) and
    before the stream guard (a malformed Watch or Scan takes no stream slot)."""

    def __init__(self, log_interval: float = LOG_INTERVAL) -> None:
        self._log = RateLimitedLog(log_interval)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        wrap = functools.partial(self._wrap, handler_call_details.method)
        return wrap_handler(
            handler, wrap, request_deserializer=tolerant(handler.request_deserializer)
        )

    def _refuse(self, method: str, request: Malformed, context: grpc.ServicerContext) -> NoReturn:
        self._log.warning(
            "malformed request to %s from %s: %s", method, context.peer(), request.error
        )
        abort(
            context,
            rich_status(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"malformed request: {request.error[:_MAX_DETAIL]}",
                Reason.MALFORMED_REQUEST,
            ),
        )

    def _checked(self, method: str, requests: Any, context: grpc.ServicerContext) -> Iterator:
        for request in requests:
            if isinstance(request, Malformed):
                self._refuse(method, request, context)
            yield request

    def _wrap(self, method: str, behavior: Behavior, requests: bool, _responses: bool) -> Behavior:
        def request_stream(request_iterator: Any, context: grpc.ServicerContext) -> Any:
            return behavior(self._checked(method, request_iterator, context), context)

        def one_request(request: Any, context: grpc.ServicerContext) -> Any:
            if isinstance(request, Malformed):
                self._refuse(method, request, context)
            return behavior(request, context)

        return request_stream if requests else one_request
