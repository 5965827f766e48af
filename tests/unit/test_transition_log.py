"""The store's TransitionLog builds a line's fields only for a line it will
write: a rescue's warning at any level, an ended operation's line at INFO."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from lrod.domain.operation import Operation, Payload
from lrod.domain.states import State
from lrod.store.endings import EndedBy, Transition, TransitionLog

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _transition(state: State, by: EndedBy) -> Transition:
    op = Operation(
        id="op1",
        owner="o",
        job_type="t",
        state=state,
        input=Payload("type.googleapis.com/x.Y", b""),
        create_time=NOW,
        update_time=NOW,
        run_after=NOW,
        end_time=NOW if state is not State.QUEUED else None,
    )
    return Transition(op, State.RUNNING, by, "w1")


@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING])
def test_each_line_written_at_its_level(caplog: pytest.LogCaptureFixture, level: int) -> None:
    caplog.set_level(level, logger="lrod.store")
    TransitionLog().transitions_committed(
        [
            _transition(State.SUCCEEDED, EndedBy.WORKER),
            _transition(State.QUEUED, EndedBy.RESCUE),
            _transition(State.QUEUED, EndedBy.WORKER),  # a retry: no line
        ]
    )
    lines = [(r.levelno, r.getMessage(), getattr(r, "state", None)) for r in caplog.records]
    rescued = (logging.WARNING, "rescued a job whose lease expired", "QUEUED")
    if level == logging.INFO:
        assert lines == [(logging.INFO, "operation ended", "SUCCEEDED"), rescued]
    else:
        assert lines == [rescued]
