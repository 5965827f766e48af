"""The one table from error codes to gRPC and HTTP, and the one place that
turns exceptions into RPC errors with google.rpc.Status details (AIP-193)."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from lrod.domain.errors import ERROR_DOMAIN, Code, LrodError

log = logging.getLogger("lrod.api")

# code -> (gRPC status, HTTP status)
STATUS_TABLE: dict[Code, tuple[grpc.StatusCode, int]] = {
    Code.OK: (grpc.StatusCode.OK, 200),
    Code.CANCELLED: (grpc.StatusCode.CANCELLED, 499),
    Code.UNKNOWN: (grpc.StatusCode.UNKNOWN, 500),
    Code.INVALID_ARGUMENT: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    Code.DEADLINE_EXCEEDED: (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    Code.NOT_FOUND: (grpc.StatusCode.NOT_FOUND, 404),
    Code.ALREADY_EXISTS: (grpc.StatusCode.ALREADY_EXISTS, 409),
    Code.PERMISSION_DENIED: (grpc.StatusCode.PERMISSION_DENIED, 403),
    Code.RESOURCE_EXHAUSTED: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    Code.FAILED_PRECONDITION: (grpc.StatusCode.FAILED_PRECONDITION, 400),
    Code.ABORTED: (grpc.StatusCode.ABORTED, 409),
    Code.OUT_OF_RANGE: (grpc.StatusCode.OUT_OF_RANGE, 400),
    Code.UNIMPLEMENTED: (grpc.StatusCode.UNIMPLEMENTED, 501),
    Code.INTERNAL: (grpc.StatusCode.INTERNAL, 500),
    Code.UNAVAILABLE: (grpc.StatusCode.UNAVAILABLE, 503),
    Code.DATA_LOSS: (grpc.StatusCode.DATA_LOSS, 500),
    Code.UNAUTHENTICATED: (grpc.StatusCode.UNAUTHENTICATED, 401),
}

INTERNAL_MESSAGE = "An internal error occurred."


def status_of(error: LrodError) -> status_pb2.Status:
    """A google.rpc.Status with ErrorInfo always, BadRequest for field
    violations and RetryInfo when the caller should come back."""
    status = status_pb2.Status(code=int(error.code), message=error.message)
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
    )
    status.details.add().Pack(info)
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description, reason=v.reason
                )
                for v in error.violations
            ]
        )
        status.details.add().Pack(bad)
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_seconds * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def internal_status() -> status_pb2.Status:
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))
    return status


async def _abort(context: grpc.aio.ServicerContext, error: BaseException, method: str) -> None:
    if isinstance(error, LrodError):
        status = status_of(error)
    else:
        log.error("unexpected error in %s", method, exc_info=error)
        status = internal_status()
    await context.abort_with_status(rpc_status.to_status(status))


_R = TypeVar("_R")
Unary = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[_R]]
Streaming = Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[_R]]


def unary(method: Unary[_R]) -> Unary[_R]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> _R:
        try:
            return await method(self, request, context)
        except Exception as error:
            if _is_abort(error):
                raise
            await _abort(context, error, method.__qualname__)
            raise  # unreachable: abort raises

    return wrapper


def streaming(method: Streaming[_R]) -> Streaming[_R]:
    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[_R]:
        try:
            async for item in method(self, request, context):
                yield item
        except Exception as error:
            if _is_abort(error):
                raise
            await _abort(context, error, method.__qualname__)

    return wrapper


def _is_abort(error: BaseException) -> bool:
    # context.abort() raises AbortError to end the RPC; let it through.
    return isinstance(error, grpc.aio.AbortError)
