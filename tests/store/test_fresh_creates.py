"""Creates with request_ids or dedupe keys: on PostgreSQL ONE statement
that stores every row of a group commit or a BatchSubmit (labels and NOTIFY
in it) when none repeats a stored one, else the transaction's path
(create_sql.PG_INSERT_FRESH, creates.create_fresh). The answers are the same
on both databases: a repeat inside a flush or a batch gets its first's
operation (or is refused, its request differing), a stored request_id or an
active dedupe key returns what is stored, a batch is stored whole or not at
all, and concurrent duplicates (another store on the same database, a row
committed while the statement waits on the unique index) end with one
operation that every caller gets."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from lrod.domain.errors import AlreadyExists, NotFound
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.creates import fresh_plan
from lrod.store.engine import open_database
from lrod.store.migrate import upgrade
from lrod.store.sql_store import SqlStore
from tests.store.conftest import plain_dsn
from tests.store.test_contract import new_job

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _item(job: NewJob) -> tuple[NewJob, str]:
    return job, job.fingerprint()


async def _stored(store: SqlStore, op_id: str) -> bool:
    try:
        await store.get(op_id, "alice", NOW)
    except NotFound:
        return False
    return True


async def test_one_flush_answers_each_submit_as_one_at_a_time_would(store: SqlStore) -> None:
    kept = new_job(request_id="kept")
    await store.create(*_item(kept))
    fresh = new_job(request_id="fresh", labels={"team": "a"})
    same = replace(fresh, id=new_operation_id())  # the same request again
    other = new_job(request_id="fresh", priority=5)  # the same request_id, another request
    keyed = new_job(dedupe_key="k", request_id="keyed")
    joins = new_job(dedupe_key="k", input=Payload("type.googleapis.com/x", b"other"))
    plain = new_job()
    answers = await asyncio.gather(
        *(store.create(*_item(j)) for j in (fresh, same, other, keyed, joins, plain)),
        return_exceptions=True,
    )
    first, again, refused, by_key, joined, alone = answers
    assert not isinstance(first, BaseException)
    assert first[1]
    assert first[0].labels == {"team": "a"}
    assert again == (first[0], False)
    assert isinstance(refused, AlreadyExists)
    assert refused.reason == "REQUEST_ID_REUSED"
    assert not isinstance(by_key, BaseException)
    assert by_key[1]
    assert joined == (by_key[0], False)
    assert not isinstance(alone, BaseException)
    assert alone[1]
    for job in (fresh, keyed, plain):
        assert await _stored(store, job.id)
    for job in (same, other, joins):
        assert not await _stored(store, job.id)
    # A flush with a stored request_id among fresh ones answers each.
    repeat = replace(kept, id=new_operation_id())
    new = new_job(request_id="new")
    (op, created), (made, made_new) = await asyncio.gather(
        store.create(*_item(repeat)), store.create(*_item(new))
    )
    assert (op.id, created, made.id, made_new) == (kept.id, False, new.id, True)


async def test_a_batch_with_request_ids_is_whole_and_a_retry_repeats_it(store: SqlStore) -> None:
    jobs = [new_job(request_id=f"b-{i}", labels={"i": str(i)}) for i in range(4)]
    twice = replace(jobs[1], id=new_operation_id())  # a repeat inside the batch
    stored = await store.create_all([_item(j) for j in [*jobs, twice]])
    assert [(op.id, new) for op, new in stored] == [(j.id, True) for j in jobs] + [
        (jobs[1].id, False)
    ]
    assert [op.labels for op, _ in stored[:4]] == [{"i": str(i)} for i in range(4)]
    again = await store.create_all([_item(replace(j, id=new_operation_id())) for j in jobs])
    assert [(op.id, new) for op, new in again] == [(j.id, False) for j in jobs]
    # Some stored, some not: the stored ones returned, the rest stored.
    more = new_job(request_id="b-new")
    mixed = await store.create_all([_item(replace(jobs[0], id=new_operation_id())), _item(more)])
    assert [(op.id, new) for op, new in mixed] == [(jobs[0].id, False), (more.id, True)]


async def test_a_batch_with_a_refused_member_stores_none(store: SqlStore) -> None:
    taken = new_job(request_id="taken")
    await store.create(*_item(taken))
    jobs = [new_job(request_id=f"n-{i}") for i in range(3)]
    clash = new_job(request_id="taken", priority=9)
    with pytest.raises(AlreadyExists) as refused:
        await store.create_all([_item(j) for j in [jobs[0], clash, *jobs[1:]]])
    assert refused.value.metadata["index"] == "1"
    # Refused inside the batch itself: the same request_id, another request.
    inside = new_job(request_id="n-0", priority=4)
    with pytest.raises(AlreadyExists) as refused:
        await store.create_all([_item(j) for j in [*jobs, inside]])
    assert refused.value.metadata["index"] == "3"
    # An active dedupe key twice in a batch: the second joins the first.
    keyed = [new_job(dedupe_key="d"), new_job(dedupe_key="d", priority=2)]
    joined = await store.create_all([_item(j) for j in keyed])
    assert [(op.id, new) for op, new in joined] == [(keyed[0].id, True), (keyed[0].id, False)]
    for job in [*jobs, clash, inside, keyed[1]]:
        assert not await _stored(store, job.id)


async def test_concurrent_duplicates_from_two_stores_end_as_one(database_url: str) -> None:
    upgrade(database_url)
    stores = [SqlStore(open_database(database_url)) for _ in range(2)]
    try:
        for round_ in range(5):
            jobs = [new_job(request_id=f"race-{round_}") for _ in range(6)]
            answers = await asyncio.gather(
                *(stores[i % 2].create(*_item(j)) for i, j in enumerate(jobs))
            )
            assert len({op.id for op, _ in answers}) == 1
            assert sum(created for _, created in answers) == 1
            batches = [
                [_item(new_job(request_id=f"batch-{round_}-{k}")) for k in range(3)]
                for _ in range(2)
            ]
            stored = await asyncio.gather(
                *(s.create_all(b) for s, b in zip(stores, batches, strict=True))
            )
            assert [op.id for op, _ in stored[0]] == [op.id for op, _ in stored[1]]
            assert sum(new for batch in stored for _, new in batch) == 3
    finally:
        await asyncio.gather(*(s.close() for s in stores))


def test_the_plan_takes_firsts_and_leaves_what_one_statement_cannot_answer() -> None:
    a, b = new_job(request_id="a"), new_job(request_id="b")
    a2 = replace(a, id=new_operation_id())
    a3 = new_job(request_id="a", priority=1)
    items = [_item(j) for j in (a, b, a2, a3)]
    plan = fresh_plan(items, whole=False)
    assert plan is not None
    assert (plan.firsts, plan.repeats) == ([0, 1], [(2, 0), (3, 0)])
    assert fresh_plan(items, whole=True) is None  # a3 refused: the batch is not stored
    assert fresh_plan(items[:3], whole=True) == plan.__class__([0, 1], [(2, 0)])
    keyed = [_item(new_job(dedupe_key="k")), _item(new_job(dedupe_key="k"))]
    assert fresh_plan(keyed, whole=False) is None
    other_owner = [_item(new_job(dedupe_key="k")), _item(new_job(dedupe_key="k", owner="bob"))]
    assert fresh_plan(other_owner, whole=True) == plan.__class__([0, 1], [])


# -- PostgreSQL: one statement, heard; a lost race reads the winner ---------
async def _heard_ops(payloads: list[dict[str, Any]], count: int) -> list[str]:
    async with asyncio.timeout(10):
        while sum(len(p["ops"]) for p in payloads) < count:
            await asyncio.sleep(0.01)
    return sorted(i for p in payloads for i in p["ops"])


async def test_fresh_creates_with_request_ids_are_one_statement_and_heard(
    pg_store: SqlStore, heard: list[dict[str, Any]]
) -> None:
    begun: list[object] = []
    event.listen(pg_store._db.writer.sync_engine, "begin", begun.append)
    later = NOW + timedelta(hours=1)
    jobs = [
        new_job(request_id="r-1", labels={"team": "a"}),
        new_job(request_id="r-2", run_after=later),
        new_job(dedupe_key="k-1"),
    ]
    created = await asyncio.gather(*(pg_store.create(*_item(j)) for j in jobs))
    assert all(new for _, new in created)
    batch = [new_job(request_id=f"b-{i}", labels={"i": str(i)}) for i in range(3)]
    await pg_store.create_all([_item(j) for j in batch])
    assert await _heard_ops(heard, 6) == sorted(j.id for j in jobs + batch)
    assert all(p["o"] == pg_store.origin and p["c"] == [] and "w" in p for p in heard)
    assert min(datetime.fromisoformat(p["w"]) for p in heard) == NOW
    for job in jobs + batch:
        stored = await pg_store.get(job.id, "alice", NOW)
        assert (stored.labels, stored.run_after, stored.request_id) == (
            job.labels,
            job.run_after,
            job.request_id,
        )
    assert begun == []


async def test_a_create_that_loses_the_race_on_the_index_returns_the_winner(
    pg_store: SqlStore, postgres_url: str
) -> None:
    """Another writer's row for the same request_id, committed while the
    statement waits on the unique index (after its snapshot: the statement
    cannot see it): the create and the batch each return the winner."""
    winner = new_job(request_id="race")
    loser = replace(winner, id=new_operation_id())
    batch_winner = new_job(request_id="batch-race")
    batch = [new_job(request_id="batch-other"), replace(batch_winner, id=new_operation_id())]
    other = SqlStore(open_database(postgres_url))
    watch = await psycopg.AsyncConnection.connect(plain_dsn(postgres_url), autocommit=True)
    try:

        async def waiting() -> int:
            cursor = await watch.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND datname = current_database()"
            )
            row = await cursor.fetchone()
            return int(row[0]) if row else 0

        async with other._db.writer.begin() as conn:
            await other._create_sql.insert(conn, [_item(winner), _item(batch_winner)])
            create = asyncio.create_task(pg_store.create(*_item(loser)))
            stored = asyncio.create_task(pg_store.create_all([_item(j) for j in batch]))
            async with asyncio.timeout(10):
                while await waiting() < 2:
                    await asyncio.sleep(0.02)
        op, created = await create
        assert (op.id, created) == (winner.id, False)
        answers = await stored
        expected = [(batch[0].id, True), (batch_winner.id, False)]
        assert [(o.id, new) for o, new in answers] == expected
        assert not await _stored(pg_store, loser.id)
    finally:
        await watch.close()
        await other.close()
