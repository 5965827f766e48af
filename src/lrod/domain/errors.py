"""Errors the service answers with. Each carries a public message and an
ErrorInfo reason; the api layer maps the code to gRPC and HTTP in one table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum

ERROR_DOMAIN = "lrod"


class Code(IntEnum):
    """google.rpc.Code, without depending on grpc."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True)
class QuotaViolation:
    """One google.rpc.QuotaFailure violation: whose limit, and which."""

    subject: str
    description: str


class LrodError(Exception):
    """An error whose message is fit for the caller to read."""

    code: Code = Code.INTERNAL
    default_reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
        violations: Sequence[FieldViolation] = (),
        retry_after_seconds: float | None = None,
        quota_violations: Sequence[QuotaViolation] = (),
    ) -> None:
        super().__init__(message)
        self.quota_violations = tuple(quota_violations)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})
        self.violations = tuple(violations)
        self.retry_after_seconds = retry_after_seconds


class InvalidArgument(LrodError):
    code = Code.INVALID_ARGUMENT
    default_reason = "INVALID_ARGUMENT"

    @classmethod
    def of(cls, violations: Sequence[FieldViolation], reason: str | None = None) -> InvalidArgument:
        """One error for all the violations; its ErrorInfo reason is the
        first violation's unless given."""
        # The wire layer bounds what an error repeats (lrod.api.errors); only
        # the first few violations are worth a message.
        text = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
        if len(violations) > 3:
            text += f" (and {len(violations) - 3} more)"
        first = next((v.reason for v in violations if v.reason), None)
        return cls(f"Invalid request: {text}", reason=reason or first, violations=violations)


class NotFound(LrodError):
    code = Code.NOT_FOUND
    default_reason = "OPERATION_NOT_FOUND"


class OperationExpired(NotFound):
    default_reason = "OPERATION_EXPIRED"


class AlreadyExists(LrodError):
    code = Code.ALREADY_EXISTS
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(LrodError):
    code = Code.FAILED_PRECONDITION
    default_reason = "FAILED_PRECONDITION"


class Unavailable(LrodError):
    code = Code.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class PermissionDenied(LrodError):
    code = Code.PERMISSION_DENIED
    default_reason = "PERMISSION_DENIED"


class Unauthenticated(LrodError):
    code = Code.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class ResourceExhausted(LrodError):
    code = Code.RESOURCE_EXHAUSTED
    default_reason = "RESOURCE_EXHAUSTED"
