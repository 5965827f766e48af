"""The store contract for get_many (the hub's one read per change), on the
real SQLite and PostgreSQL: every stored operation asked for, whoever owns
it, as get shows it; expired and unknown ids are absent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.sql_store import _MANY_CHUNK, SqlStore

START = datetime(2026, 6, 1, tzinfo=UTC)


def _job(owner: str) -> NewJob:
    return NewJob(
        id=new_operation_id(),
        owner=owner,
        job_type="t",
        input=Payload("x", b""),
        max_attempts=1,
        create_time=START,
        run_after=START,
    )


async def test_get_many_reads_every_owner_and_skips_unknown_and_expired(store: SqlStore) -> None:
    jobs = [_job("me"), _job("them"), _job("me")]
    for job in jobs:
        await store.create(job, job.fingerprint())
    [claim] = await store.claim("w", START, timedelta(seconds=30), 1, ["t"])
    done = await store.succeed(claim, START, Payload("y", b""), timedelta(hours=1))
    assert done is not None
    ids = [job.id for job in jobs] + [new_operation_id()]  # the last one is unknown

    found = await store.get_many(ids, START)
    assert set(found) == {job.id for job in jobs}
    for op_id, op in found.items():
        assert op == await store.get(op_id, None, START)
    assert {op.owner for op in found.values()} == {"me", "them"}
    assert found[claim.operation.id].state is State.SUCCEEDED

    later = START + timedelta(hours=2)  # the finished one has expired by then
    assert set(await store.get_many(ids, later)) == {job.id for job in jobs} - {done.id}
    assert await store.get_many([], START) == {}


async def test_get_many_reads_more_ids_than_one_statement_takes(store: SqlStore) -> None:
    job = _job("me")
    await store.create(job, job.fingerprint())
    ids = [new_operation_id() for _ in range(_MANY_CHUNK * 2)] + [job.id]
    found = await store.get_many(ids, START)
    assert list(found) == [job.id]
