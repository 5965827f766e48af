"""creates.created builds a new job's Operation by filling its __dict__:
every field must be set, to what the row the INSERT stores reads back as."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

from lrod.domain.operation import Operation, Payload, Progress
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.creates import claimed, created


def test_every_field_is_set_as_a_read_would_give_it() -> None:
    east = timezone(timedelta(hours=2))
    job = NewJob(
        id="abc",
        owner="alice",
        job_type="t",
        input=Payload("type.googleapis.com/x", b"in"),
        max_attempts=3,
        create_time=datetime(2026, 1, 2, 5, 4, 5, 123456, tzinfo=east),
        run_after=datetime(2026, 1, 2, 6, 0, tzinfo=east),
        priority=-4,
        labels={"team": "data"},
        timeout=timedelta(seconds=3, microseconds=123456),
        request_id="r",
        dedupe_key="k",
        notify_url="https://hooks.example.com/x",
    )
    op = created(job)
    assert set(op.__dict__) == {f.name for f in dataclasses.fields(Operation)}
    assert op == Operation(
        id="abc",
        owner="alice",
        job_type="t",
        state=State.QUEUED,
        input=Payload("type.googleapis.com/x", b"in"),
        create_time=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        update_time=datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC),
        run_after=datetime(2026, 1, 2, 4, 0, tzinfo=UTC),
        priority=-4,
        labels={"team": "data"},
        max_attempts=3,
        progress=Progress(),
        timeout=timedelta(seconds=3, microseconds=123456),
        request_id="r",
        dedupe_key="k",
        notify_url="https://hooks.example.com/x",
    )
    assert op.create_time.tzinfo is UTC


@dataclasses.dataclass
class _Grant:
    job_types: tuple[str, ...] = ("t",)
    worker_id: str = "w-local"
    lease_token: str = "token"
    now: datetime = datetime(2026, 1, 2, 5, 4, 6, tzinfo=timezone(timedelta(hours=2)))
    lease_expires_at: datetime = datetime(2026, 1, 2, 5, 4, 36, tzinfo=timezone(timedelta(hours=2)))

    def stored(self, claim: object) -> None: ...


def test_a_handed_off_job_is_built_as_a_claim_leaves_it() -> None:
    job = NewJob(
        id="abc",
        owner="alice",
        job_type="t",
        input=Payload("type.googleapis.com/x", b"in"),
        max_attempts=3,
        create_time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        run_after=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    op = claimed(job, _Grant())
    assert set(op.__dict__) == {f.name for f in dataclasses.fields(Operation)}
    at = datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    assert op == dataclasses.replace(
        created(job),
        state=State.RUNNING,
        attempt=1,
        start_time=at,
        update_time=at,
        lease_owner="w-local",
        lease_expires_at=datetime(2026, 1, 2, 3, 4, 36, tzinfo=UTC),
    )
    assert op.start_time is not None
    assert op.start_time.tzinfo is UTC
