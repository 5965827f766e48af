"""The webhook retry schedule: bounded, with jitter, growing."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from lrod.domain.webhooks import DEFAULT_SCHEDULE, Schedule

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def test_the_default_is_standard_webhooks_schedule() -> None:
    schedule = Schedule()
    assert schedule.max_attempts == 8
    assert sum(DEFAULT_SCHEDULE) / 3600 == pytest.approx(27.6, abs=0.05)


def test_each_retry_is_within_its_jittered_delay_and_then_it_gives_up() -> None:
    schedule = Schedule.parse("1,10,100")
    rng = random.Random(7)
    for attempts, delay in ((1, 1), (2, 10), (3, 100)):
        for _ in range(50):
            at = schedule.next_attempt(attempts, NOW, rng)
            assert at is not None
            assert (
                NOW + timedelta(seconds=delay * 0.8) <= at <= NOW + timedelta(seconds=delay * 1.2)
            )
    assert schedule.next_attempt(4, NOW, rng) is None


@pytest.mark.parametrize("text", ["x", "1,-2"])
def test_malformed_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        Schedule.parse(text)
