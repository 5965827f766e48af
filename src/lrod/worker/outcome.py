"""How an attempt ended, and the public error it shows (never internal text)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from google.protobuf.message import Message

from lrod.domain.errors import Code
from lrod.domain.operation import PublicError
from lrod.jobs.errors import JobError
from lrod.jobs.registry import JobType


@dataclass(frozen=True)
class Succeeded:
    result: Message


@dataclass(frozen=True)
class Failed:
    error: PublicError
    internal_error: str | None
    retryable: bool


@dataclass(frozen=True)
class Cancelled:
    pass


@dataclass(frozen=True)
class Released:
    """The process is draining: hand the job back without counting the attempt."""


@dataclass(frozen=True)
class LeaseLost:
    """Another worker may own the job now: write nothing."""


Outcome = Succeeded | Failed | Cancelled | Released | LeaseLost

DEADLINE_ERROR = PublicError(
    Code.DEADLINE_EXCEEDED, "The job did not finish within its time limit.", "JOB_TIMED_OUT"
)


def from_exception(error: BaseException, job_type: JobType) -> Failed:
    internal = "".join(traceback.format_exception(error))
    if isinstance(error, JobError):
        public = PublicError(error.code, error.message, error.reason, metadata=error.metadata)
        return Failed(public, internal, error.retryable)
    if job_type.retryable_exceptions and isinstance(error, job_type.retryable_exceptions):
        public = PublicError(
            Code.UNAVAILABLE, "A temporary error stopped the job.", "TEMPORARY_FAILURE"
        )
        return Failed(public, internal, True)
    public = PublicError(
        Code.INTERNAL, "The job failed because of an internal error.", "HANDLER_ERROR"
    )
    return Failed(public, internal, False)


def wrong_output(result: object, job_type: JobType) -> Failed:
    public = PublicError(
        Code.INTERNAL, "The job failed because of an internal error.", "HANDLER_ERROR"
    )
    internal = (
        f"handler of {job_type.name} returned {type(result).__name__}, "
        f"expected {job_type.output_type.DESCRIPTOR.full_name}"
    )
    return Failed(public, internal, False)
