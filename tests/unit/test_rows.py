"""store/rows.py builds operations without their __init__ (for speed): the
result must be the Operation the constructor gives, every field filled."""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from lrod.domain.errors import Code
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.states import State
from lrod.store.rows import error_to_json, to_operation
from lrod.store.statements import OPS

NOW = datetime(2026, 6, 1, tzinfo=UTC)
OOPS = PublicError(Code.UNAVAILABLE, "try later", "UPSTREAM_DOWN", metadata={"k": "v"})


def _row(**values: Any) -> SimpleNamespace:
    bare = {c.key: None for c in OPS.columns} | {
        "id": "a" * 32,
        "owner": "alice",
        "job_type": "t",
        "state": "QUEUED",
        "priority": 0,
        "input_type": "type.googleapis.com/x",
        "input_value": memoryview(b"in"),
        "labels": {},
        "attempt": 0,
        "max_attempts": 3,
        "create_time": NOW,
        "update_time": NOW,
        "run_after": NOW,
        "cancel_requested": 0,
        "progress_completed": 0,
        "progress_total": 0,
        "progress_stage": "",
        "version": 1,
    }
    return SimpleNamespace(**(bare | values))


def test_a_bare_row_is_the_constructed_operation() -> None:
    op = to_operation(_row())
    assert op == Operation(
        id="a" * 32,
        owner="alice",
        job_type="t",
        state=State.QUEUED,
        input=Payload("type.googleapis.com/x", b"in"),
        create_time=NOW,
        update_time=NOW,
        run_after=NOW,
        max_attempts=3,
    )
    assert set(vars(op)) == {f.name for f in fields(Operation)}
    assert type(op.input.value) is bytes
    assert op.cancel_requested is False


def test_a_full_row_is_the_constructed_operation() -> None:
    row = _row(
        state="FAILED",
        priority=-3,
        labels={"team": "a"},
        request_id="r-1",
        dedupe_key="d-1",
        attempt=2,
        timeout_seconds=2.5,
        start_time=NOW,
        end_time=NOW,
        expire_time=NOW + timedelta(days=1),
        cancel_requested=True,
        progress_completed=3,
        progress_total=10,
        progress_stage="copying",
        result_type="type.googleapis.com/y",
        result_value=None,
        error=error_to_json(OOPS),
        last_attempt_error=error_to_json(OOPS),
        lease_owner="w1",
        lease_expires_at=NOW,
        version=4,
        notify_url="https://hooks.example.com/done",
    )
    op = to_operation(row)
    expected = Operation(
        id="a" * 32,
        owner="alice",
        job_type="t",
        state=State.FAILED,
        input=Payload("type.googleapis.com/x", b"in"),
        create_time=NOW,
        update_time=NOW,
        run_after=NOW,
        priority=-3,
        labels={"team": "a"},
        attempt=2,
        max_attempts=3,
        start_time=NOW,
        end_time=NOW,
        expire_time=NOW + timedelta(days=1),
        cancel_requested=True,
        progress=Progress(3, 10, "copying"),
        result=Payload("type.googleapis.com/y", b""),
        error=OOPS,
        last_attempt_error=OOPS,
        timeout=timedelta(seconds=2.5),
        request_id="r-1",
        dedupe_key="d-1",
        lease_owner="w1",
        lease_expires_at=NOW,
        version=4,
        notify_url="https://hooks.example.com/done",
    )
    assert op == expected
    assert hash(op.progress) == hash(expected.progress)
    assert repr(op) == repr(expected)
    assert replace(op, version=5) == replace(expected, version=5)
    # The row's labels are copied, not shared.
    assert op.labels is not row.labels
