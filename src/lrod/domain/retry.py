"""When a failed attempt runs again: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from lrod.domain.errors import Code
from lrod.domain.operation import PublicError

LEASE_EXPIRED = PublicError(
    Code.UNAVAILABLE, "The worker running the job stopped responding.", "LEASE_EXPIRED"
)


@dataclass(frozen=True)
class Backoff:
    """Delay before attempt n+1 is drawn uniformly from
    [minimum, min(maximum, minimum * factor ** (n - 1))]."""

    minimum: timedelta = timedelta(seconds=1)
    maximum: timedelta = timedelta(minutes=5)
    factor: float = 2.0

    def ceiling(self, attempt: int) -> timedelta:
        cap = self.maximum.total_seconds()
        try:
            grown = self.minimum.total_seconds() * self.factor ** max(attempt - 1, 0)
        except OverflowError:  # a very high attempt number: the cap applies
            grown = cap
        return timedelta(seconds=min(grown, cap))

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        low = self.minimum.total_seconds()
        high = self.ceiling(attempt).total_seconds()
        return timedelta(seconds=(rng or random).uniform(low, max(low, high)))


def should_retry(*, retryable: bool, attempt: int, max_attempts: int) -> bool:
    return retryable and attempt < max_attempts


def exhausted(last: PublicError, attempts: int) -> PublicError:
    """The error of a job whose retries ran out: the last attempt's public
    code and message, with a reason that says the attempts are exhausted."""
    metadata = dict(last.metadata) | {"last_reason": last.reason, "attempts": str(attempts)}
    return PublicError(last.code, last.message, "ATTEMPTS_EXHAUSTED", last.domain, metadata)


@dataclass(frozen=True)
class JobPolicy:
    """What a job type decides about its attempts' ends: the backoff before a
    retry, and how long a finished operation is kept. The registry gives one
    per job type; the worker and the rescuer consult the same one."""

    backoff: Backoff = Backoff()
    retention: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class RetryDecision:
    """`retry_at` set: queue the job again then; else it fails with `error`."""

    retry_at: datetime | None
    error: PublicError


def decide_retry(
    *,
    error: PublicError,
    retryable: bool,
    attempt: int,
    max_attempts: int,
    backoff: Backoff,
    now: datetime,
    rng: random.Random | None = None,
) -> RetryDecision:
    """The one rule for a failed attempt, whatever ended it (a handler error,
    a time limit, a lost lease): retry after the backoff while attempts are
    left, else fail; a retryable failure out of attempts fails as exhausted."""
    if should_retry(retryable=retryable, attempt=attempt, max_attempts=max_attempts):
        return RetryDecision(now + backoff.delay(attempt, rng), error)
    if retryable:
        return RetryDecision(None, exhausted(error, attempt))
    return RetryDecision(None, error)
