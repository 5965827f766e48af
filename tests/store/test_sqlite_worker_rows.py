"""SQLite's worker writes (the claim, the finishing write) bind and read
their datetimes with lrod's own conversions (dialect.sqlite_time,
sqlite_time_read) instead of SQLAlchemy's chain of schema.UTCDateTime over
its SQLite DATETIME: the same text in, the same values out, so a claimed or
finished operation is what the normal read path reads back."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from lrod.domain.operation import Payload
from lrod.store.dialect import sqlite_time, sqlite_time_read
from lrod.store.engine import open_database
from lrod.store.migrate import upgrade
from lrod.store.sql_store import SqlStore
from lrod.store.statements import ATTEMPTS, T
from lrod.store.worker_sql import _Processors
from tests.store.test_sqlite_rows import JOBS, MOMENTS

TEXTS = [sqlite_time(moment) for moment in MOMENTS] + [
    "2026-06-01 12:00:00",  # SQLite's own strftime (the bench loader writes it)
    "2026-06-01",
    "2026-06-01T12:00:00.5",
    "2026-06-01 12",
    "2026-06-01T12:00:00Z",
    "2026-06-01 12:00:00-05:30",
    "2026-06-01 12:00:00+02:00",  # a zone: converted to UTC, as UTCDateTime does
]


def _sqlalchemy_read(text: str) -> object:
    dialect = sqlite.dialect()
    process = T.update_time.type.dialect_impl(dialect).result_processor(dialect, None)
    assert process is not None
    return process(text)


@pytest.mark.parametrize("text", TEXTS)
def test_a_time_reads_back_as_sqlalchemy_reads_it(text: str) -> None:
    ours = sqlite_time_read(text)
    assert ours == _sqlalchemy_read(text)
    assert ours.tzinfo is UTC


@pytest.mark.parametrize("moment", MOMENTS, ids=str)
def test_a_time_written_reads_back_as_the_same_moment(moment: datetime) -> None:
    for read in (sqlite_time_read(sqlite_time(moment)), _sqlalchemy_read(sqlite_time(moment))):
        assert read == moment.astimezone(UTC)
        assert read.tzinfo is UTC  # type: ignore[union-attr]
        assert read.fold == 0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "why"),
    [("", "isoformat"), ("yesterday", "isoformat"), ("2026-13-01 00:00:00", "month")],
)
def test_bad_text_is_refused_as_sqlalchemy_refuses_it(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        sqlite_time_read(text)
    with pytest.raises(ValueError, match=why):
        _sqlalchemy_read(text)


def test_the_worker_rows_convert_as_sqlalchemy_converts() -> None:
    dialect = sqlite.dialect()
    ours = _Processors(dialect)
    for column, process in (
        (T.update_time, ours.time),
        (ATTEMPTS.c.end_time, ours.attempt_time),
    ):
        theirs = column.type.dialect_impl(dialect).bind_processor(dialect)
        assert theirs is not None
        for moment in [*MOMENTS, None]:
            assert process(moment) == theirs(moment)
    raw: list[object] = [None] * len(list(T))
    names = [c.name for c in T]
    for name in ("create_time", "update_time", "run_after", "start_time", "lease_expires_at"):
        raw[names.index(name)] = "2026-06-01 12:00:00.000007"
    raw[names.index("labels")] = "{}"
    record = ours.record(raw)
    assert record.labels == {}
    raw[names.index("labels")] = '{"a": "{}"}'
    assert ours.record(raw).labels == {"a": "{}"}
    record = ours.record(raw)
    for name in ("create_time", "run_after", "lease_expires_at"):
        assert getattr(record, name) == datetime(2026, 6, 1, 12, 0, 0, 7, tzinfo=UTC)
    assert record.end_time is None


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


async def test_a_claimed_and_finished_job_reads_back_as_written(
    store: tuple[SqlStore, str],
) -> None:
    opened, path = store
    # No webhook: the one-hop write (worker_sql.alone) of both.
    job = replace(JOBS[1], notify_url=None)
    await opened.create(job, job.fingerprint())
    now = datetime(2026, 6, 1, 15, 0, 0, 123, tzinfo=UTC)
    [claim] = await opened.claim("w1", now, timedelta(seconds=30), 5, ["t"])
    assert claim.operation.start_time == now
    assert claim.operation.lease_expires_at == now + timedelta(seconds=30)
    assert await opened.get(job.id, "alice", now) == claim.operation
    done = now + timedelta(seconds=1, microseconds=5)
    written = await opened.succeed(
        claim, done, Payload("type.googleapis.com/x.Z", b"out"), timedelta(days=1)
    )
    assert written is not None
    assert written.end_time == done
    assert written.expire_time == done + timedelta(days=1)
    assert await opened.get(job.id, "alice", done) == written
    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT o.end_time, o.expire_time, a.end_time FROM operations o"
            " JOIN attempts a ON a.operation_id = o.id WHERE o.id = ?",
            (job.id,),
        ).fetchone()
    assert row == (sqlite_time(done), sqlite_time(done + timedelta(days=1)), sqlite_time(done))
