"""The operation (a job and its outcome) as plain frozen data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from lrod.domain.errors import ERROR_DOMAIN, Code
from lrod.domain.states import State
from lrod.domain.webhooks import Delivery

OPERATION_PREFIX = "operations/"


@dataclass(frozen=True)
class Payload:
    """A packed protobuf message (the body of a google.protobuf.Any)."""

    type_url: str
    value: bytes


@dataclass(frozen=True)
class Progress:
    completed: int = 0
    total: int = 0
    stage: str = ""


@dataclass(frozen=True)
class PublicError:
    """An error safe to show to the caller: never internal exception text."""

    code: Code
    message: str
    reason: str
    domain: str = ERROR_DOMAIN
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    id: str
    owner: str
    job_type: str
    state: State
    input: Payload
    create_time: datetime
    update_time: datetime
    run_after: datetime
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    attempt: int = 0
    max_attempts: int = 1
    start_time: datetime | None = None
    end_time: datetime | None = None
    expire_time: datetime | None = None
    cancel_requested: bool = False
    progress: Progress = Progress()
    result: Payload | None = None
    error: PublicError | None = None
    last_attempt_error: PublicError | None = None
    timeout: timedelta | None = None
    request_id: str | None = None
    dedupe_key: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    version: int = 1
    # The completion webhook's target, and its delivery once the operation is
    # done (read with the operation; None on rows written without it).
    notify_url: str | None = None
    delivery: Delivery | None = None

    @property
    def name(self) -> str:
        return OPERATION_PREFIX + self.id

    @property
    def done(self) -> bool:
        return self.state.terminal


def past_expiry(expire_time: datetime | None, now: datetime) -> bool:
    """The one expiry rule: an operation whose expire_time has come answers
    as expired, whether or not the janitor has removed it yet."""
    return expire_time is not None and expire_time <= now


def poll_after(op: Operation, now: datetime) -> timedelta | None:
    """How long a polling client should wait before asking again (the
    Retry-After of the HTTP shape); None once the operation is done."""
    if op.done:
        return None
    if op.state.value == "QUEUED" and op.run_after > now:
        return min(op.run_after - now, timedelta(seconds=60))
    return timedelta(seconds=1)
