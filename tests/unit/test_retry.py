"""Exponential backoff with full jitter, and when to retry."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from lrod.domain.retry import Backoff, should_retry

SECOND = timedelta(seconds=1)


@pytest.mark.parametrize(
    ("attempt", "ceiling"),
    [
        (0, 1),
        (1, 1),
        (2, 2),
        (3, 4),
        (4, 8),
        (9, 256),
        (10, 300),  # 512 capped at five minutes
        (50, 300),
        (1000, 300),
    ],
)
def test_default_ceiling(attempt: int, ceiling: int) -> None:
    assert Backoff().ceiling(attempt) == timedelta(seconds=ceiling)


def test_ceiling_grows_by_factor_until_capped() -> None:
    backoff = Backoff(minimum=timedelta(milliseconds=100), maximum=timedelta(seconds=10), factor=3)
    ceilings = [backoff.ceiling(n).total_seconds() for n in range(1, 10)]
    assert ceilings[:5] == pytest.approx([0.1, 0.3, 0.9, 2.7, 8.1])
    assert ceilings[5:] == [10.0] * 4


@pytest.mark.parametrize("attempt", range(1, 40))
def test_ceiling_is_monotonic_and_bounded(attempt: int) -> None:
    backoff = Backoff()
    assert backoff.minimum <= backoff.ceiling(attempt) <= backoff.maximum
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1)


def test_factor_one_keeps_the_minimum() -> None:
    backoff = Backoff(minimum=2 * SECOND, factor=1.0)
    assert {backoff.ceiling(n) for n in range(1, 20)} == {2 * SECOND}


def test_ceiling_is_capped_for_huge_attempts() -> None:
    assert Backoff().ceiling(1025) == Backoff().maximum


@pytest.mark.parametrize(
    "backoff",
    [
        Backoff(),
        Backoff(minimum=timedelta(milliseconds=50), maximum=SECOND),
        Backoff(minimum=SECOND, maximum=timedelta(seconds=30), factor=1.5),
    ],
)
@pytest.mark.parametrize("attempt", [1, 2, 3, 5, 8, 13, 30])
def test_delay_stays_within_minimum_and_ceiling(backoff: Backoff, attempt: int) -> None:
    rng = random.Random(attempt)
    draws = [backoff.delay(attempt, rng) for _ in range(500)]
    assert all(backoff.minimum <= d <= backoff.ceiling(attempt) for d in draws)


def test_delay_is_jittered_across_the_range() -> None:
    backoff = Backoff()
    rng = random.Random(1234)
    draws = [backoff.delay(8, rng).total_seconds() for _ in range(2000)]
    # Full jitter over [1, 128]: the draws spread over the range, not a fixed value.
    assert len(set(draws)) > 1900
    assert min(draws) < 10
    assert max(draws) > 118


def test_first_attempt_delay_is_the_minimum() -> None:
    backoff = Backoff(minimum=3 * SECOND)
    assert backoff.delay(1, random.Random(0)) == 3 * SECOND


def test_delay_is_reproducible_with_a_seed() -> None:
    backoff = Backoff()
    first = [backoff.delay(6, random.Random(42)) for _ in range(3)]
    assert first == [backoff.delay(6, random.Random(42))] * 3


def test_delay_without_rng_uses_module_random() -> None:
    backoff = Backoff()
    assert backoff.minimum <= backoff.delay(5) <= backoff.ceiling(5)


def test_delay_when_maximum_below_minimum_is_the_minimum() -> None:
    backoff = Backoff(minimum=10 * SECOND, maximum=SECOND)
    assert backoff.delay(4, random.Random(0)) == 10 * SECOND


@pytest.mark.parametrize(
    ("retryable", "attempt", "max_attempts", "expected"),
    [
        (True, 1, 3, True),
        (True, 2, 3, True),
        (True, 3, 3, False),
        (True, 4, 3, False),
        (True, 1, 1, False),
        (False, 1, 3, False),
        (False, 3, 3, False),
    ],
)
def test_should_retry(retryable: bool, attempt: int, max_attempts: int, expected: bool) -> None:
    assert should_retry(retryable=retryable, attempt=attempt, max_attempts=max_attempts) is expected
