"""When a failed attempt runs again: exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

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
