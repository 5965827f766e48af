"""The operation as data, and how long a poller should wait."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lrod.domain.operation import Operation, Payload, poll_after
from lrod.domain.states import State

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
ONE_SECOND = timedelta(seconds=1)


def _op(**changes: Any) -> Operation:
    op = Operation(
        id="abcDEF012_-abcDEF012_-",
        owner="alice",
        job_type="export",
        state=State.QUEUED,
        input=Payload("type.googleapis.com/lrod.v1.ExportInput", b""),
        create_time=NOW - timedelta(minutes=1),
        update_time=NOW - timedelta(minutes=1),
        run_after=NOW - timedelta(minutes=1),
    )
    return dataclasses.replace(op, **changes)


def test_name() -> None:
    assert _op().name == "operations/abcDEF012_-abcDEF012_-"
    assert _op(id="x").name == "operations/x"


@pytest.mark.parametrize(
    ("state", "done"),
    [
        (State.QUEUED, False),
        (State.RUNNING, False),
        (State.SUCCEEDED, True),
        (State.FAILED, True),
        (State.CANCELLED, True),
    ],
)
def test_done(state: State, done: bool) -> None:
    assert _op(state=state).done is done


@pytest.mark.parametrize("state", [State.SUCCEEDED, State.FAILED, State.CANCELLED])
@pytest.mark.parametrize("run_after", [NOW - ONE_SECOND, NOW + timedelta(hours=1)])
def test_poll_after_is_none_when_done(state: State, run_after: datetime) -> None:
    assert poll_after(_op(state=state, run_after=run_after), NOW) is None


@pytest.mark.parametrize(
    ("ahead", "wait"),
    [
        (timedelta(milliseconds=250), timedelta(milliseconds=250)),
        (timedelta(seconds=5), timedelta(seconds=5)),
        (timedelta(seconds=59), timedelta(seconds=59)),
        (timedelta(seconds=60), timedelta(seconds=60)),
        (timedelta(seconds=61), timedelta(seconds=60)),
        (timedelta(days=30), timedelta(seconds=60)),
    ],
)
def test_poll_after_waits_for_a_scheduled_job(ahead: timedelta, wait: timedelta) -> None:
    assert poll_after(_op(state=State.QUEUED, run_after=NOW + ahead), NOW) == wait


@pytest.mark.parametrize(
    ("state", "run_after"),
    [
        (State.QUEUED, NOW),
        (State.QUEUED, NOW - ONE_SECOND),
        (State.QUEUED, NOW - timedelta(days=1)),
        (State.RUNNING, NOW - ONE_SECOND),
        # A running retry keeps its old run_after; only a queued job waits for it.
        (State.RUNNING, NOW + timedelta(minutes=5)),
    ],
)
def test_poll_after_is_one_second_otherwise(state: State, run_after: datetime) -> None:
    assert poll_after(_op(state=state, run_after=run_after), NOW) == ONE_SECOND


def test_operation_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        _op().state = State.RUNNING  # type: ignore[misc]
