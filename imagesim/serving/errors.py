"""One place that turns domain errors into gRPC statuses, for every RPC kind.

Every error status carries a google.rpc.ErrorInfo (domain "imagesim.v1", reason from
imagesim.v1.ErrorReason, metadata) in its rich details, so callers in any language match on the
reason, never on message text. An unexpected exception becomes INTERNAL with a short error id:
the log has the traceback under that id, the caller gets the id and never the exception text.
"""

from __future__ import annotations

import functools
import inspect
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from imagesim.errors import ERROR_DOMAIN, ImagesimError, Reason

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


def status_code(error: ImagesimError) -> grpc.StatusCode:
    """The grpc.StatusCode an error names (INTERNAL when it names none)."""
    return getattr(grpc.StatusCode, error.code, grpc.StatusCode.INTERNAL)


def rich_status(
    code: grpc.StatusCode,
    message: str,
    reason: Reason | str,
    metadata: Mapping[str, str] | None = None,
) -> status_pb2.Status:
    """A google.rpc.Status with one ErrorInfo detail."""
    info = error_details_pb2.ErrorInfo(
        reason=reason.value if isinstance(reason, Reason) else reason,
        domain=ERROR_DOMAIN,
        metadata=dict(metadata or {}),
    )
    detail = any_pb2.Any()
    detail.Pack(info)
    return status_pb2.Status(code=code.value[0], message=message, details=[detail])


def error_status(error: ImagesimError) -> status_pb2.Status:
    """The google.rpc.Status of a domain error (also used for per-item errors in streams)."""
    return rich_status(status_code(error), error.message, error.reason, error.metadata)


def internal_status(exc: BaseException, method: str) -> status_pb2.Status:
    """INTERNAL with an error id; the traceback goes to the log under that id."""
    error_id = uuid.uuid4().hex[:12]
    log.error("internal error %s in %s", error_id, method, exc_info=exc)
    return rich_status(
        grpc.StatusCode.INTERNAL,
        f"internal error {error_id} in {method.rsplit('.', 1)[-1]} (the server log has details)",
        Reason.INTERNAL_ERROR,
        {"error_id": error_id},
    )


def abort(context: grpc.ServicerContext, status: status_pb2.Status) -> NoReturn:
    """End the call with a rich status (raises)."""
    context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable: abort_with_status raises")


def abort_with_error(context: grpc.ServicerContext, exc: BaseException, method: str) -> NoReturn:
    if isinstance(exc, ImagesimError):
        abort(context, error_status(exc))
    abort(context, internal_status(exc, method))


def _is_abort(exc: BaseException, context: grpc.ServicerContext) -> bool:
    # context.abort() raises a bare Exception after setting the status: let it through.
    aborted = context.code() is not None  # type: ignore[attr-defined]  # grpcio >= 1.38
    return aborted and not isinstance(exc, ImagesimError)


def map_errors(handler: F) -> F:
    """Decorate a servicer method (unary or server-streaming) to map errors to statuses."""
    method = handler.__qualname__

    if inspect.isgeneratorfunction(handler):

        @functools.wraps(handler)
        def stream_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from handler(self, request, context)
            except Exception as exc:
                if _is_abort(exc, context):
                    raise
                abort_with_error(context, exc, method)

        return stream_wrapper  # type: ignore[return-value]

    @functools.wraps(handler)
    def unary_wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return handler(self, request, context)
        except Exception as exc:
            if _is_abort(exc, context):
                raise
            abort_with_error(context, exc, method)

    return unary_wrapper  # type: ignore[return-value]
