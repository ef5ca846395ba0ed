"""One place that turns domain errors into gRPC status codes, for every RPC kind."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import grpc

from imagesim.errors import ImagesimError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def status_code(error: ImagesimError) -> grpc.StatusCode:
    """The grpc.StatusCode an error names (INTERNAL when it names none)."""
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


def _abort(context: grpc.ServicerContext, exc: BaseException, method: str) -> None:
    if isinstance(exc, ImagesimError):
        context.abort(status_code(exc), exc.message)
    log.exception("unexpected error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error in {method}: {exc}")


def _is_abort(exc: BaseException, context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after setting the status: let it through.
    return context.code() is not None and not isinstance(exc, ImagesimError)


def map_errors(handler: F) -> F:
    """Decorate a servicer method (unary or server-streaming) to map errors to status codes."""
    method = handler.__qualname__

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from handler(self, request, context)
            except Exception as exc:
                if _is_abort(exc, context):
                    raise
                _abort(context, exc, method)

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(handler)
    def unary_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except Exception as exc:
            if _is_abort(exc, context):
                raise
            _abort(context, exc, method)

    return unary_wrapper  # type: ignore[return-value]
