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

# What an error repeats of its request is bounded, so that every error (its
# grpc-message and its grpc-status-details-bin together) stays well under
# gRPC's 8 KB metadata limit: a client that hits that limit gets
# RESOURCE_EXHAUSTED with no status and no ErrorInfo. UTF-8 bytes, not
# characters: grpc-message is percent-encoded byte by byte.
MAX_MESSAGE_BYTES = 300
MAX_VIOLATIONS = 10
MAX_FIELD_BYTES = 64
MAX_DESCRIPTION_BYTES = 128
MAX_REASON_BYTES = 64
MAX_METADATA_ENTRIES = 4
MAX_METADATA_BYTES = 96


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes, marked with "..." if cut."""
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def status_of(error: LrodError) -> status_pb2.Status:
    """A google.rpc.Status with ErrorInfo always, BadRequest for field
    violations and RetryInfo when the caller should come back; bounded in
    size whatever the request held."""
    status = status_pb2.Status(code=int(error.code), message=clip(error.message, MAX_MESSAGE_BYTES))
    metadata = {
        clip(k, MAX_REASON_BYTES): clip(v, MAX_METADATA_BYTES)
        for k, v in list(error.metadata.items())[:MAX_METADATA_ENTRIES]
    }
    info = error_details_pb2.ErrorInfo(
        reason=clip(error.reason, MAX_REASON_BYTES), domain=ERROR_DOMAIN, metadata=metadata
    )
    status.details.add().Pack(info)
    if error.violations:
        shown = [
            error_details_pb2.BadRequest.FieldViolation(
                field=clip(v.field, MAX_FIELD_BYTES),
                description=clip(v.description, MAX_DESCRIPTION_BYTES),
                reason=clip(v.reason, MAX_REASON_BYTES),
            )
            for v in error.violations[:MAX_VIOLATIONS]
        ]
        if len(error.violations) > MAX_VIOLATIONS:
            shown[-1] = error_details_pb2.BadRequest.FieldViolation(
                field="...",
                description=f"{len(error.violations) - MAX_VIOLATIONS + 1} more violations",
                reason=shown[-1].reason,
            )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=shown))
    if error.quota_violations:
        failure = error_details_pb2.QuotaFailure(
            violations=[
                error_details_pb2.QuotaFailure.Violation(
                    subject=v.subject, description=v.description
                )
                for v in error.quota_violations
            ]
        )
        status.details.add().Pack(failure)
    if error.retry_after_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(error.retry_after_seconds * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    return status


def internal_status() -> status_pb2.Status:
    status = status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE)
    status.details.add().Pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))
    return status
