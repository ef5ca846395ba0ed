"""Domain errors shared by the core code of every process.

Core code (model, shard store, merge) raises these and knows nothing of gRPC; the servers map
each to the gRPC status code it names (imagesim.serving.errors), and the client library raises
them back from a failed call, so library users never need to import grpc.
"""

from __future__ import annotations


class ImagesimError(Exception):
    """Base error. `code` is the name of the gRPC status code it maps to."""

    code = "INTERNAL"

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.address = address

    def __str__(self) -> str:
        where = f" ({self.address})" if self.address else ""
        return f"{self.code}{where}: {self.message}"


class InvalidArgument(ImagesimError):
    """The request itself is wrong: bad image, wrong dimension, NaN, k <= 0, empty key."""

    code = "INVALID_ARGUMENT"


class NotFound(ImagesimError):
    code = "NOT_FOUND"


class FailedPrecondition(ImagesimError):
    """The request is well-formed but the system is not in a state to serve it."""

    code = "FAILED_PRECONDITION"


class ResourceExhausted(ImagesimError):
    code = "RESOURCE_EXHAUSTED"


class Unavailable(ImagesimError):
    """A server could not be reached or is shutting down."""

    code = "UNAVAILABLE"


class DeadlineExceeded(ImagesimError):
    code = "DEADLINE_EXCEEDED"


class Internal(ImagesimError):
    code = "INTERNAL"


class Cancelled(ImagesimError):
    code = "CANCELLED"


ERRORS_BY_CODE: dict[str, type[ImagesimError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Internal,
        Cancelled,
    )
}


def error_for_code(code: str, message: str, *, address: str | None = None) -> ImagesimError:
    """The domain error for a status code name; unknown codes keep their name."""
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        err = ImagesimError(message, address=address)
        err.code = code
        return err
    return cls(message, address=address)
