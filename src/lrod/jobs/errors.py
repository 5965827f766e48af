"""Errors a handler raises to say how its attempt failed. Their message,
code and reason are public: they reach the caller in Operation.error. Any
other exception is an internal error: its text goes to logs and the attempt
history only."""

from __future__ import annotations

from collections.abc import Mapping

from lrod.domain.errors import Code


class JobError(Exception):
    retryable = False
    default_code = Code.FAILED_PRECONDITION
    default_reason = "JOB_FAILED"

    def __init__(
        self,
        message: str,
        *,
        code: Code | None = None,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.reason = reason or self.default_reason
        self.metadata = dict(metadata or {})


class PermanentJobError(JobError):
    """The job cannot succeed (bad input, missing record, no permission): fail now."""


class RetryableJobError(JobError):
    """A temporary failure (timeout, rate limit, unavailable): try again later."""

    retryable = True
    default_code = Code.UNAVAILABLE
    default_reason = "TEMPORARY_FAILURE"
