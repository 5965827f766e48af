"""The INSERT of new operations (and their labels) as constant SQL per
dialect, run at driver level inside the store's write transaction, as the
worker's statements are (worker_sql.py): no parameter construction or bind
processing by SQLAlchemy per row, and one trip for any number of rows.

- PostgreSQL (asyncpg): one statement, the rows as UNNEST arrays (one
  prepared statement whatever the batch size); the labels, when there are
  any, in a second one.
- SQLite (aiosqlite): sqlite3's executemany of the operations and of their
  labels, in one hop to aiosqlite's thread; `alone` runs it as a whole
  transaction in that one hop (BEGIN IMMEDIATE and COMMIT included).

Values go through the column types' own bind processors (the conversions
SQLAlchemy applies), so the rows are those SQLAlchemy's INSERT would write.
Driver errors come out as SQLAlchemy's DBAPIError (an IntegrityError for a
lost race), as from any other statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.dialect import runs_on_asyncpg
from lrod.store.driver import Hop, asyncpg_fetch, at_once, within
from lrod.store.statements import T

QUEUED = State.QUEUED.value

# The columns a create sets; the rest start NULL.
_SET = (
    "id, owner, job_type, state, priority, input_type, input_value, labels, request_id,"
    " request_fingerprint, dedupe_key, attempt, max_attempts, timeout_seconds, create_time,"
    " update_time, run_after, cancel_requested, progress_completed, progress_total,"
    " progress_stage, version, notify_url"
)

PG_INSERT = f"""
INSERT INTO operations ({_SET})
SELECT id, owner, job_type, '{QUEUED}', priority, input_type, input_value, labels::json,
       request_id, request_fingerprint, dedupe_key, 0, max_attempts, timeout_seconds,
       create_time, create_time, run_after, false, 0, 0, '', 1, notify_url
  FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bytea[],
              $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],
              $12::float8[], $13::timestamptz[], $14::timestamptz[], $15::text[])
    AS i(id, owner, job_type, priority, input_type, input_value,
         labels, request_id, request_fingerprint, dedupe_key, max_attempts,
         timeout_seconds, create_time, run_after, notify_url)
"""
PG_LABELS = """
INSERT INTO operation_labels (operation_id, key, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
"""

SQLITE_INSERT = (
    f"INSERT INTO operations ({_SET}) VALUES"
    f" (?, ?, ?, '{QUEUED}', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, 0, 0, 0, '', 1, ?)"
)
SQLITE_LABELS = "INSERT INTO operation_labels (operation_id, key, value) VALUES (?, ?, ?)"


class CreateSql(Protocol):
    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        """Insert the new operations of `items` (job, fingerprint) and their
        labels, in the caller's transaction."""
        ...


class CreateSqlAlone(Protocol):
    async def insert(self, items: Sequence[tuple[NewJob, str]]) -> None:
        """The same INSERT as a whole transaction of its own (its COMMIT
        returned when this does)."""
        ...


def for_dialect(dialect: Dialect) -> CreateSql:
    if runs_on_asyncpg(dialect):
        return _Postgres(dialect)
    return _Sqlite(dialect)


def alone(writer: AsyncEngine) -> CreateSqlAlone | None:
    """As worker_sql.alone: the INSERT as a transaction of its own where the
    driver runs one in a single trip (SQLite), else None."""
    if runs_on_asyncpg(writer.dialect):
        return None
    return _SqliteAlone(_Sqlite(writer.dialect), at_once(writer))


def _bind(column: Any, dialect: Dialect) -> Callable[[Any], Any]:
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return lambda value: value
    return lambda value: None if value is None else process(value)


def _labels(items: Sequence[tuple[NewJob, str]]) -> list[tuple[str, str, str]]:
    return [(job.id, k, v) for job, _ in items for k, v in job.labels.items()]


class _Postgres:
    def __init__(self, dialect: Dialect) -> None:
        self._time = _bind(T.create_time, dialect)
        self._json = _bind(T.labels, dialect)

    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        time, js = self._time, self._json
        jobs = [job for job, _ in items]
        args = (
            [j.id for j in jobs],
            [j.owner for j in jobs],
            [j.job_type for j in jobs],
            [j.priority for j in jobs],
            [j.input.type_url for j in jobs],
            [j.input.value for j in jobs],
            [js(dict(j.labels)) for j in jobs],
            [j.request_id for j in jobs],
            [fp if job.request_id else None for job, fp in items],
            [j.dedupe_key for j in jobs],
            [j.max_attempts for j in jobs],
            [j.timeout.total_seconds() if j.timeout is not None else None for j in jobs],
            [time(j.create_time) for j in jobs],
            [time(j.run_after) for j in jobs],
            [j.notify_url for j in jobs],
        )
        await asyncpg_fetch(conn, PG_INSERT, args)
        labels = _labels(items)
        if labels:
            ids, keys, values = (list(column) for column in zip(*labels, strict=True))
            await asyncpg_fetch(conn, PG_LABELS, (ids, keys, values))


class _Sqlite:
    def __init__(self, dialect: Dialect) -> None:
        self._time = _bind(T.create_time, dialect)
        self._json = _bind(T.labels, dialect)

    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        await self.insert_by(within(conn), items)

    async def insert_by(self, hop: Hop, items: Sequence[tuple[NewJob, str]]) -> None:
        time, js = self._time, self._json
        rows = []
        for job, fingerprint in items:
            timeout = job.timeout
            created = time(job.create_time)
            rows.append(
                (
                    job.id, job.owner, job.job_type, job.priority,
                    job.input.type_url, job.input.value, js(dict(job.labels)),
                    job.request_id, fingerprint if job.request_id else None, job.dedupe_key,
                    job.max_attempts, timeout.total_seconds() if timeout is not None else None,
                    created, created, time(job.run_after), job.notify_url,
                )
            )  # fmt: skip
        labels = _labels(items)

        def run(db: sqlite3.Connection) -> None:
            db.executemany(SQLITE_INSERT, rows)
            if labels:
                db.executemany(SQLITE_LABELS, labels)

        await hop(SQLITE_INSERT, run)


class _SqliteAlone:
    def __init__(self, statements: _Sqlite, hop: Hop) -> None:
        self._statements = statements
        self._hop = hop

    async def insert(self, items: Sequence[tuple[NewJob, str]]) -> None:
        await self._statements.insert_by(self._hop, items)
