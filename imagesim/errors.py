"""Domain errors shared by the core code of every process.

Core code (model, shard store, merge) raises these and knows nothing of gRPC; the servers map
each to the gRPC status code it names plus a machine-readable `reason` (sent as a
google.rpc.ErrorInfo, see imagesim.serving.errors), and the client library raises them back from
a failed call, so library users never import grpc nor match English text: they compare
`error.reason` with a `Reason`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

# The ErrorInfo domain of every imagesim error.
ERROR_DOMAIN = "imagesim.v1"


class Reason(str, Enum):
    """Why a call failed: the names of imagesim.v1.ErrorReason (common.proto documents each)."""

    UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"
    # any server
    INTERNAL_ERROR = "INTERNAL_ERROR"
    NOT_READY = "NOT_READY"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    TOO_MANY_STREAMS = "TOO_MANY_STREAMS"
    STREAM_IDLE = "STREAM_IDLE"
    UNAUTHENTICATED_CALLER = "UNAUTHENTICATED_CALLER"
    ROLE_REQUIRED = "ROLE_REQUIRED"
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    # embedder
    IMAGE_EMPTY = "IMAGE_EMPTY"
    IMAGE_UNDECODABLE = "IMAGE_UNDECODABLE"
    IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
    IMAGE_TOO_MANY_PIXELS = "IMAGE_TOO_MANY_PIXELS"
    DECODE_BUDGET_EXHAUSTED = "DECODE_BUDGET_EXHAUSTED"
    SPACE_NOT_OFFERED = "SPACE_NOT_OFFERED"
    # index
    DIMENSION_MISMATCH = "DIMENSION_MISMATCH"
    VECTOR_NOT_FINITE = "VECTOR_NOT_FINITE"
    VECTOR_ZERO = "VECTOR_ZERO"
    KEY_EMPTY = "KEY_EMPTY"
    KEY_TOO_LONG = "KEY_TOO_LONG"
    KEY_DUPLICATE = "KEY_DUPLICATE"
    METADATA_TOO_LARGE = "METADATA_TOO_LARGE"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    WRONG_SHARD = "WRONG_SHARD"
    LAYOUT_CHANGED = "LAYOUT_CHANGED"
    LAYOUT_MISMATCH = "LAYOUT_MISMATCH"
    BUILD_FAILED = "BUILD_FAILED"
    SPACE_MISMATCH = "SPACE_MISMATCH"


class ImagesimError(Exception):
    """Base error. `code` is the name of the gRPC status code it maps to; `reason` says why in
    a form programs can match; `metadata` adds facts (e.g. {"limit": "1024"})."""

    code = "INTERNAL"
    default_reason = Reason.UNSPECIFIED

    def __init__(
        self,
        message: str,
        *,
        reason: Reason | str | None = None,
        metadata: Mapping[str, str] | None = None,
        address: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: str = _reason_name(self.default_reason if reason is None else reason)
        self.metadata: dict[str, str] = dict(metadata or {})
        self.address = address

    def __str__(self) -> str:
        where = f" ({self.address})" if self.address else ""
        return f"{self.code}{where}: {self.message}"


def _reason_name(reason: Reason | str) -> str:
    return reason.value if isinstance(reason, Reason) else str(reason)


class InvalidArgument(ImagesimError):
    """The request itself is wrong: bad image, wrong dimension, NaN, k out of range, bad key."""

    code = "INVALID_ARGUMENT"


class NotFound(ImagesimError):
    code = "NOT_FOUND"
    default_reason = Reason.KEY_NOT_FOUND


class FailedPrecondition(ImagesimError):
    """The request is well-formed but the system is not in a state to serve it."""

    code = "FAILED_PRECONDITION"


class Aborted(ImagesimError):
    """A concurrent change won (compare-and-set lost): re-read and retry."""

    code = "ABORTED"


class ResourceExhausted(ImagesimError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(ImagesimError):
    """A server could not be reached, is loading, or is shutting down."""

    code = "UNAVAILABLE"


class DeadlineExceeded(ImagesimError):
    code = "DEADLINE_EXCEEDED"


class Internal(ImagesimError):
    code = "INTERNAL"
    default_reason = Reason.INTERNAL_ERROR


class Cancelled(ImagesimError):
    code = "CANCELLED"


class Unauthenticated(ImagesimError):
    code = "UNAUTHENTICATED"
    default_reason = Reason.UNAUTHENTICATED_CALLER


class PermissionDenied(ImagesimError):
    code = "PERMISSION_DENIED"
    default_reason = Reason.ROLE_REQUIRED


class MissingExtra(ImagesimError):
    """A feature needs packages of an install extra that is not installed (raised locally)."""

    code = "FAILED_PRECONDITION"

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(f"{what}: install it with pip install 'imagesim[{extra}]'")


ERRORS_BY_CODE: dict[str, type[ImagesimError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        Aborted,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
        Cancelled,
        Unauthenticated,
        PermissionDenied,
    )
}


def error_for_code(
    code: str,
    message: str,
    *,
    reason: Reason | str | None = None,
    metadata: Mapping[str, str] | None = None,
    address: str | None = None,
) -> ImagesimError:
    """The domain error for a status code name; unknown codes keep their name."""
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        err = ImagesimError(message, reason=reason, metadata=metadata, address=address)
        err.code = code
        return err
    return cls(message, reason=reason, metadata=metadata, address=address)
