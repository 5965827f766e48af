"""The one table from error codes to gRPC and HTTP, and the google.rpc.Status
(AIP-193) an error becomes; lrod.api.calls applies it to every RPC."""

from __future__ import annotations

import logging

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

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
