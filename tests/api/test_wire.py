"""A new operation's Submit answer is written straight in protobuf's wire
format (lrod.api.wire): it must be, byte for byte, what convert.operation
builds and protobuf serializes, and it must leave every other shape of
operation to convert.operation."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from lrod.api import convert, wire
from lrod.domain.operation import Operation, Payload, Progress
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.creates import created

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
BASE = NewJob(
    id="AbCdEfGhIjKlMnOpQrStUv",
    owner="alice",
    job_type="examples.sleep",
    input=Payload("type.googleapis.com/lrod.examples.v1.SleepJob", b"\x08\x02"),
    max_attempts=3,
    create_time=NOW,
    run_after=NOW,
)
WHOLE_SECOND = NOW.replace(microsecond=0)
BEFORE_1970 = datetime(1960, 1, 1, 0, 0, 0, 5, tzinfo=UTC)

JOBS = {
    "plain": BASE,
    "negative-priority": replace(BASE, priority=-17),
    "top-priority": replace(BASE, priority=2**31 - 1),
    "no-attempts-field": replace(BASE, max_attempts=0),
    "many-attempts": replace(BASE, max_attempts=1000),
    "later": replace(BASE, run_after=NOW + timedelta(hours=2, microseconds=7)),
    "in-a-second": replace(BASE, run_after=NOW + timedelta(seconds=1)),
    "in-half-a-second": replace(BASE, run_after=NOW + timedelta(milliseconds=500)),
    "in-a-minute-and-more": replace(BASE, run_after=NOW + timedelta(seconds=61, microseconds=3)),
    "scheduled-in-the-past": replace(BASE, run_after=NOW - timedelta(minutes=5)),
    "long-job-type": replace(BASE, job_type="ü" * 200),
    "whole-second": replace(BASE, create_time=WHOLE_SECOND, run_after=WHOLE_SECOND),
    "before-1970": replace(BASE, create_time=BEFORE_1970, run_after=BEFORE_1970),
    "long-id": replace(BASE, id="x" * 300),
    "with-timeout-and-request-id": replace(
        BASE, timeout=timedelta(seconds=3), request_id="r-1", dedupe_key="d-1"
    ),
}


@pytest.mark.parametrize("job", JOBS.values(), ids=JOBS.keys())
def test_a_new_operation_is_the_bytes_protobuf_writes(job: NewJob) -> None:
    op = created(job)
    assert wire.fresh_operation(op, NOW) == convert.operation(op, NOW).SerializeToString()


def test_a_repeat_that_is_still_as_created_is_written_too() -> None:
    # A stored row read back (a repeat's answer) is a plain Operation.
    op = created(BASE)
    stored = Operation(**op.__dict__)
    assert wire.fresh_operation(stored, NOW) == convert.operation(op, NOW).SerializeToString()


def _changed(**fields: object) -> Operation:
    op = created(BASE)
    return Operation(**{**op.__dict__, **fields})


OTHERS = {
    "labels": created(replace(BASE, labels={"team": "data", "tier": "gold"})),
    "webhook": created(replace(BASE, notify_url="https://example.com/hook")),
    "handed-off": _changed(state=State.RUNNING, attempt=1, start_time=NOW),
    "written-again": _changed(version=2, progress=Progress(completed=1)),
    "cancelled": _changed(version=2, state=State.CANCELLED, end_time=NOW),
}


@pytest.mark.parametrize("op", OTHERS.values(), ids=OTHERS.keys())
def test_any_other_operation_is_left_to_convert(op: Operation) -> None:
    assert wire.fresh_operation(op, NOW) is None
