"""The store contract for expiry, on the real SQLite and PostgreSQL: an
operation past its expire_time answers 'expired' before the janitor removes
it, and after (from its tombstone); a name that never existed does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lrod.domain.errors import NotFound, OperationExpired
from lrod.domain.filters import Filter
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.sql_store import SqlStore

START = datetime(2026, 6, 1, tzinfo=UTC)
OWNER = "someone"


async def _finished(store: SqlStore, retention: timedelta) -> str:
    job = NewJob(
        id=new_operation_id(),
        owner=OWNER,
        job_type="t",
        input=Payload("x", b""),
        max_attempts=1,
        create_time=START,
        run_after=START,
    )
    await store.create(job, job.fingerprint())
    [claim] = await store.claim("w", START, timedelta(seconds=30), 1, ["t"])
    done = await store.succeed(claim, START, Payload("y", b""), retention)
    assert done is not None
    assert done.expire_time == START + retention
    return job.id


async def test_expired_before_and_after_the_janitor(store: SqlStore) -> None:
    op_id = await _finished(store, timedelta(hours=1))
    later = START + timedelta(hours=2)
    assert (await store.get(op_id, OWNER, START)).done  # not yet expired
    for attempt in range(2):  # the row expired; then only its tombstone
        with pytest.raises(OperationExpired):
            await store.get(op_id, OWNER, later)
        with pytest.raises(OperationExpired):
            await store.cancel(op_id, OWNER, later, lambda _: timedelta(days=1))
        with pytest.raises(OperationExpired):
            await store.delete(op_id, OWNER, later)
        assert await store.list(OWNER, Filter(), None, 10, later) == []
        if attempt == 0:
            assert await store.expire(later, 100) == 1
    assert await store.expire(later, 100) == 0
    with pytest.raises(NotFound) as unknown:
        await store.get(new_operation_id(), OWNER, later)
    assert not isinstance(unknown.value, OperationExpired)


async def test_tombstones_go_after_thirty_days(store: SqlStore) -> None:
    op_id = await _finished(store, timedelta(0))
    assert await store.expire(START + timedelta(seconds=1), 100) == 1
    with pytest.raises(OperationExpired):
        await store.get(op_id, OWNER, START + timedelta(days=29))
    await store.expire(START + timedelta(days=31), 100)
    with pytest.raises(NotFound) as gone:
        await store.get(op_id, OWNER, START + timedelta(days=31))
    assert not isinstance(gone.value, OperationExpired)


async def test_another_owner_sees_nothing(store: SqlStore) -> None:
    op_id = await _finished(store, timedelta(hours=1))
    with pytest.raises(NotFound):
        await store.get(op_id, "someone-else", START)
    assert await store.list("someone-else", Filter(), None, 10, START) == []
