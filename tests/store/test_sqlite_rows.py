"""SQLite's INSERT of new operations binds its values at driver level,
converted by lrod (dialect.sqlite_time, the labels' JSON) instead of
SQLAlchemy's processors: the rows must hold the very text SQLAlchemy's own
INSERT writes (so databases written before and after read back alike), and
read back through the normal read path as the operation the create answered.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert
from sqlalchemy.dialects import sqlite

from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.dialect import sqlite_time
from lrod.store.engine import open_database
from lrod.store.migrate import upgrade
from lrod.store.schema import OperationRow
from lrod.store.sql_store import SqlStore
from lrod.store.statements import T
from tests.store.conftest import new_row
from tests.store.test_contract import Grant

MOMENTS = [
    datetime(2026, 6, 1, tzinfo=UTC),  # no microseconds: still written
    datetime(2026, 6, 1, 12, 34, 56, 789012, tzinfo=UTC),
    datetime(1, 1, 1, tzinfo=UTC),  # a year below 1000: zero-padded
    datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 6, 1, 1, 2, 3, 4, tzinfo=timezone(timedelta(hours=-7, minutes=-30))),
    datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Berlin")),
    datetime(2026, 6, 1, 9, tzinfo=ZoneInfo("UTC")),  # UTC, but not datetime.UTC
]


def _sqlalchemy_time(moment: datetime) -> str:
    """What SQLAlchemy binds for an operation time on SQLite."""
    dialect = sqlite.dialect()
    process = T.create_time.type.dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    value = process(moment)
    assert isinstance(value, str)
    return value


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_time_is_the_text_sqlalchemy_binds(moment: datetime) -> None:
    assert sqlite_time(moment) == _sqlalchemy_time(moment)


def test_a_naive_time_is_refused_as_sqlalchemy_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_time(datetime(2026, 6, 1))
    with pytest.raises(ValueError, match="naive"):
        _sqlalchemy_time(datetime(2026, 6, 1))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[SqlStore, str]]:
    path = str(tmp_path / "lrod.db")
    url = f"sqlite:///{path}"
    upgrade(url)
    opened = SqlStore(open_database(url))
    try:
        yield opened, path
    finally:
        await opened.close()


def _job(**fields: object) -> NewJob:
    create_time = datetime(2026, 6, 1, 12, 0, 0, 0, tzinfo=UTC)
    job = NewJob(
        id=new_operation_id(),
        owner="alice",
        job_type="t",
        input=Payload("type.googleapis.com/x.Y", b"\x00in"),
        max_attempts=3,
        create_time=create_time,
        run_after=create_time,
    )
    return replace(job, **fields)  # type: ignore[arg-type]


JOBS = [
    _job(),
    _job(
        labels={"team": "data", "tier": "gold", "ünï": 'cödé "q"'},
        priority=-17,
        request_id="r-1",
        timeout=timedelta(seconds=3, microseconds=123457),
        run_after=datetime(2026, 6, 1, 14, 0, 0, 7, tzinfo=UTC),
        notify_url="https://example.com/hook",
    ),
    _job(
        create_time=datetime(2026, 6, 1, 5, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        run_after=datetime(2026, 6, 1, 5, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
        dedupe_key="d-1",
    ),
]


def _stored(path: str, op_id: str) -> dict[str, object]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM operations WHERE id = ?", (op_id,)).fetchone()
    values = dict(row)
    del values["id"]
    return values


async def _sqlalchemy_insert(store: SqlStore, job: NewJob, fingerprint: str) -> str:
    """The same row written by SQLAlchemy's own INSERT (its processors)."""
    op_id = new_operation_id()
    async with store._db.writer.begin() as conn:
        await conn.execute(
            insert(OperationRow),
            # request_id and dedupe_key are unique per owner: their text is compared aside
            {**new_row(job, fingerprint), "id": op_id, "request_id": None, "dedupe_key": None},
        )
    return op_id


@pytest.mark.parametrize("job", JOBS, ids=["plain", "every-field", "other-zone"])
async def test_a_created_row_is_the_row_sqlalchemy_writes_and_reads_back(
    store: tuple[SqlStore, str], job: NewJob
) -> None:
    opened, path = store
    fingerprint = job.fingerprint()
    answered, created = await opened.create(job, fingerprint)
    assert created
    now = job.create_time
    assert await opened.get(job.id, "alice", now) == answered
    ours = _stored(path, job.id)
    theirs = _stored(path, await _sqlalchemy_insert(opened, job, fingerprint))
    for key in ("request_id", "dedupe_key"):
        assert ours.pop(key) == getattr(job, key)
        theirs.pop(key)
    assert ours == theirs
    assert isinstance(ours["create_time"], str)
    assert len(str(ours["create_time"])) == len("2026-06-01 12:00:00.000000")


async def test_a_batch_converts_each_row_s_own_times(store: tuple[SqlStore, str]) -> None:
    """A create converts a time shared by the rows before it once
    (create_sql._TimeText): a row whose time differs, or that follows one
    whose time differs, still holds its own."""
    opened, path = store
    shared = datetime(2026, 6, 1, 12, 0, 0, 0, tzinfo=UTC)
    other = datetime(2026, 6, 1, 5, 0, 0, 1, tzinfo=timezone(timedelta(hours=2)))
    later = datetime(2026, 6, 1, 14, 0, 0, 7, tzinfo=UTC)
    times = [(shared, shared), (shared, shared), (other, other), (shared, later), (shared, shared)]
    jobs = [replace(_job(), create_time=c, run_after=r) for c, r in times]
    await opened.create_all([(job, job.fingerprint()) for job in jobs])
    for job in jobs:
        ours = _stored(path, job.id)
        theirs = _stored(path, await _sqlalchemy_insert(opened, job, job.fingerprint()))
        assert ours == theirs
        assert ours["create_time"] == sqlite_time(job.create_time)
        assert ours["run_after"] == sqlite_time(job.run_after)


async def test_a_claimed_row_is_the_row_sqlalchemy_writes_and_reads_back(
    store: tuple[SqlStore, str],
) -> None:
    opened, path = store
    job = _job(labels={"a": "b"})
    grant = Grant(now=datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC))
    answered, created = await opened.create_claimed(job, job.fingerprint(), grant)
    assert created
    assert await opened.get(job.id, "alice", grant.now) == answered
    row = _stored(path, job.id)
    assert row["start_time"] == row["update_time"] == _sqlalchemy_time(grant.now)
    assert row["lease_expires_at"] == _sqlalchemy_time(grant.lease_expires_at)
    assert row["labels"] == '{"a": "b"}'
    [attempt] = await opened.attempts(job.id)
    assert attempt.start_time == grant.now
    with sqlite3.connect(path) as db:
        (start,) = db.execute(
            "SELECT start_time FROM attempts WHERE operation_id = ?", (job.id,)
        ).fetchone()
    assert start == _sqlalchemy_time(grant.now)
