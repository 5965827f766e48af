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

On PostgreSQL values go through the column types' own bind processors (the
conversions SQLAlchemy applies); on SQLite they are converted here as those
processors convert them (dialect.sqlite_time: the same text), at a fraction
of the cost. Either way the rows are those SQLAlchemy's INSERT would write.
Driver errors come out as SQLAlchemy's DBAPIError (an IntegrityError for a
lost race), as from any other statement.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store import pg_notify
from lrod.store.dialect import runs_on_asyncpg, sqlite_time
from lrod.store.driver import Hop, asyncpg_fetch, at_once, within
from lrod.store.protocol import HandOff
from lrod.store.schema import ACTIVE_STATES_SQL
from lrod.store.statements import T

QUEUED = State.QUEUED.value
RUNNING = State.RUNNING.value

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

# Submit's create as ONE statement of its own (autocommit: no BEGIN or
# COMMIT round trip), its labels ($16-$18) and its NOTIFY ($19: the payload,
# made from the jobs, since every row goes in or, the statement failing,
# none) in it.
PG_INSERT_NOTIFY = f"""
WITH stored AS ({PG_INSERT.strip()}),
labelled AS (
  INSERT INTO operation_labels (operation_id, key, value)
  SELECT * FROM unnest($16::text[], $17::text[], $18::text[]))
SELECT pg_notify('{pg_notify.CHANNEL}', $19)
"""

# The same with request_ids or dedupe keys (Submit's group commit, a
# BatchSubmit): ONE statement that stores every row, with its labels and its
# NOTIFY, if none of them repeats a stored request_id or an active dedupe key
# (`found`), and else stores nothing; it returns how many it found. All
# rows or none either way; a concurrent writer's row, committed after the
# statement's snapshot, fails it on the unique index (IntegrityError), as
# it fails the INSERT of the transaction path.
PG_INSERT_FRESH = f"""
WITH i AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bytea[],
                       $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],
                       $12::float8[], $13::timestamptz[], $14::timestamptz[], $15::text[])
    AS i(id, owner, job_type, priority, input_type, input_value,
         labels, request_id, request_fingerprint, dedupe_key, max_attempts,
         timeout_seconds, create_time, run_after, notify_url)),
found AS (
  SELECT o.id FROM i JOIN operations o
      ON o.owner = i.owner AND o.request_id = i.request_id
  UNION ALL
  SELECT o.id FROM i JOIN operations o
      ON o.owner = i.owner AND o.job_type = i.job_type AND o.dedupe_key = i.dedupe_key
   WHERE o.dedupe_key IS NOT NULL AND o.{ACTIVE_STATES_SQL}),
stored AS (
  INSERT INTO operations ({_SET})
  SELECT id, owner, job_type, '{QUEUED}', priority, input_type, input_value, labels::json,
         request_id, request_fingerprint, dedupe_key, 0, max_attempts, timeout_seconds,
         create_time, create_time, run_after, false, 0, 0, '', 1, notify_url
    FROM i WHERE NOT EXISTS (SELECT FROM found)),
labelled AS (
  INSERT INTO operation_labels (operation_id, key, value)
  SELECT * FROM unnest($16::text[], $17::text[], $18::text[])
   WHERE NOT EXISTS (SELECT FROM found)),
note AS (
  SELECT pg_notify('{pg_notify.CHANNEL}', $19) WHERE NOT EXISTS (SELECT FROM found))
SELECT (SELECT count(*) FROM found), (SELECT count(*) FROM note)
"""

SQLITE_INSERT = (
    f"INSERT INTO operations ({_SET}) VALUES"
    f" (?, ?, ?, '{QUEUED}', ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, 0, 0, 0, '', 1, ?)"
)
SQLITE_LABELS = "INSERT INTO operation_labels (operation_id, key, value) VALUES (?, ?, ?)"


# A Submit handed off to this process's idle worker pool (WorkerPool.reserve):
# the row as a claim leaves it (RUNNING, attempt 1, the lease, start_time)
# and its attempts row, unless a due queued job of a type the pool serves has
# at least its priority (`ahead`, in the claim's order): then it goes in
# QUEUED, as by `insert`, for the claim loop to take in order.
_CLAIMED_SET = _SET + ", lease_owner, lease_token, lease_expires_at, start_time"

PG_INSERT_CLAIMED = f"""
WITH ahead AS (
  SELECT priority FROM operations
   WHERE state = '{QUEUED}' AND run_after <= $20 AND job_type = ANY($21::text[])
   ORDER BY priority DESC, run_after, create_time
   LIMIT 1),
i AS (
  SELECT *, NOT EXISTS (SELECT 1 FROM ahead WHERE ahead.priority >= i.priority) AS claimed
    FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::bytea[],
                $7::text[], $8::text[], $9::text[], $10::text[], $11::int[],
                $12::float8[], $13::timestamptz[], $14::timestamptz[], $15::text[],
                $16::text[], $17::text[], $18::timestamptz[], $19::timestamptz[])
      AS i(id, owner, job_type, priority, input_type, input_value,
           labels, request_id, request_fingerprint, dedupe_key, max_attempts,
           timeout_seconds, create_time, run_after, notify_url,
           worker, token, now, expires)),
stored AS (
  INSERT INTO operations ({_CLAIMED_SET})
  SELECT id, owner, job_type, CASE WHEN claimed THEN '{RUNNING}' ELSE '{QUEUED}' END,
         priority, input_type, input_value, labels::json,
         request_id, request_fingerprint, dedupe_key, CASE WHEN claimed THEN 1 ELSE 0 END,
         max_attempts, timeout_seconds,
         create_time, CASE WHEN claimed THEN now ELSE create_time END, run_after, false,
         0, 0, '', 1, notify_url,
         CASE WHEN claimed THEN worker END, CASE WHEN claimed THEN token END,
         CASE WHEN claimed THEN expires END, CASE WHEN claimed THEN now END
    FROM i
  RETURNING id, state, lease_owner, lease_token, start_time),
opened AS (
  INSERT INTO attempts (operation_id, number, worker_id, lease_token, start_time, outcome)
  SELECT id, 1, lease_owner, lease_token, start_time, '{RUNNING}'
    FROM stored WHERE state = '{RUNNING}')
SELECT id FROM stored WHERE state = '{RUNNING}'
"""

SQLITE_AHEAD = (
    f"SELECT priority FROM operations WHERE state = '{QUEUED}' AND run_after <= ?"
    " AND job_type IN ({marks}) ORDER BY priority DESC, run_after, create_time LIMIT 1"
)
SQLITE_INSERT_CLAIMED = (
    f"INSERT INTO operations ({_CLAIMED_SET}) VALUES"
    f" (?, ?, ?, '{RUNNING}', ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, 0, 0, 0, '', 1, ?,"
    " ?, ?, ?, ?)"
)
SQLITE_ATTEMPT = (
    "INSERT INTO attempts (operation_id, number, worker_id, lease_token, start_time, outcome)"
    f" VALUES (?, 1, ?, ?, ?, '{RUNNING}')"
)

HandedOff = tuple[NewJob, str, HandOff]


class CreateSql(Protocol):
    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        """Insert the new operations of `items` (job, fingerprint) and their
        labels, in the caller's transaction."""
        ...

    async def insert_claimed(self, conn: AsyncConnection, items: Sequence[HandedOff]) -> list[bool]:
        """Insert the new operations of `items` (job, fingerprint, hand-off)
        claimed under their hand-off's lease, with their attempts rows and
        labels, in the caller's transaction; those a due queued job of at
        least their priority (of the hand-offs' job types) must not overtake
        go in QUEUED instead. Per item: stored claimed."""
        ...


class CreateSqlAlone(Protocol):
    async def insert(self, items: Sequence[tuple[NewJob, str]]) -> None:
        """The same INSERT as a whole transaction of its own (its COMMIT
        returned when this does)."""
        ...

    async def insert_claimed(self, items: Sequence[HandedOff]) -> list[bool]:
        """`CreateSql.insert_claimed` as a whole transaction of its own."""
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


class CreateSqlOne(Protocol):
    async def insert(self, items: Sequence[tuple[NewJob, str]]) -> None:
        """`CreateSql.insert` as ONE statement that is a transaction of its
        own, with its NOTIFY (committed when this returns)."""
        ...

    async def insert_fresh(self, items: Sequence[tuple[NewJob, str]]) -> bool:
        """As `insert`, if no item repeats a stored request_id or an active
        dedupe key (of the same owner, and job type); else nothing is
        stored. Whether they were stored. The items must not repeat each
        other (creates.fresh_plan)."""
        ...


# One statement of constant SQL as a transaction of its own (as worker_sql.Run).
Run = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


def one_statement(dialect: Dialect, run: Run | None, origin: str) -> CreateSqlOne | None:
    """On PostgreSQL (given `run`), the INSERT as one statement in autocommit,
    its NOTIFY naming `origin`; None elsewhere."""
    if run is None or not runs_on_asyncpg(dialect):
        return None
    return _PostgresOne(_Postgres(dialect), run, origin)


def _bind(column: Any, dialect: Dialect) -> Callable[[Any], Any]:
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    if process is None:
        return lambda value: value
    return lambda value: None if value is None else process(value)


def _labels(items: Sequence[tuple[NewJob, str] | HandedOff]) -> list[tuple[str, str, str]]:
    return [(item[0].id, k, v) for item in items for k, v in item[0].labels.items()]


def _ahead_of(items: Sequence[HandedOff]) -> tuple[datetime, list[str]]:
    """The moment and the job types the check for queued work ahead uses:
    the latest claim time of the batch and every type its pools serve (more
    work counts as ahead than each item alone would see: if in doubt, the
    job is queued)."""
    types = sorted({t for _, _, hand_off in items for t in hand_off.job_types})
    return max(hand_off.now for _, _, hand_off in items), types


class _Postgres:
    def __init__(self, dialect: Dialect) -> None:
        self._time = _bind(T.create_time, dialect)
        self._json = _bind(T.labels, dialect)

    def _columns(self, items: Sequence[tuple[NewJob, str]]) -> tuple[list[Any], ...]:
        """The jobs' columns as PG_INSERT's arrays (PG_INSERT_CLAIMED's
        first fifteen)."""
        time, js = self._time, self._json
        jobs = [job for job, _ in items]
        # Each distinct time converted once: a BatchSubmit's jobs share
        # theirs (create_time and run_after are its `now`).
        times: dict[datetime, Any] = {}

        def at(moment: datetime) -> Any:
            value = times.get(moment)
            if value is None:
                value = times[moment] = time(moment)
            return value

        return (
            [j.id for j in jobs],
            [j.owner for j in jobs],
            [j.job_type for j in jobs],
            [j.priority for j in jobs],
            [j.input.type_url for j in jobs],
            [j.input.value for j in jobs],
            [js(dict(j.labels)) if j.labels else "{}" for j in jobs],
            [j.request_id for j in jobs],
            [fp if job.request_id else None for job, fp in items],
            [j.dedupe_key for j in jobs],
            [j.max_attempts for j in jobs],
            [j.timeout.total_seconds() if j.timeout is not None else None for j in jobs],
            [at(j.create_time) for j in jobs],
            [at(j.run_after) for j in jobs],
            [j.notify_url for j in jobs],
        )

    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        await asyncpg_fetch(conn, PG_INSERT, self._columns(items))
        await self._insert_labels(conn, items)

    async def _insert_labels(
        self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str] | HandedOff]
    ) -> None:
        labels = _labels(items)
        if labels:
            ids, keys, values = (list(column) for column in zip(*labels, strict=True))
            await asyncpg_fetch(conn, PG_LABELS, (ids, keys, values))

    async def insert_claimed(self, conn: AsyncConnection, items: Sequence[HandedOff]) -> list[bool]:
        time = self._time
        jobs = [job for job, _, _ in items]
        grants = [hand_off for _, _, hand_off in items]
        moment, types = _ahead_of(items)
        args = (
            *self._columns([(job, fp) for job, fp, _ in items]),
            [g.worker_id for g in grants],
            [g.lease_token for g in grants],
            [time(g.now) for g in grants],
            [time(g.lease_expires_at) for g in grants],
            time(moment),
            types,
        )
        rows = await asyncpg_fetch(conn, PG_INSERT_CLAIMED, args)
        await self._insert_labels(conn, items)
        claimed = {row[0] for row in rows}
        return [job.id in claimed for job in jobs]


class _Sqlite:
    """Values converted here, once per row, as SQLAlchemy's processors would
    (dialect.sqlite_time, json.dumps of the labels): its per-value
    processor chain (UTCDateTime, then DATETIME's format) cost about twice
    the whole row."""

    def __init__(self, dialect: Dialect) -> None:
        self._ahead: dict[int, str] = {}

    @staticmethod
    def _row(job: NewJob, fingerprint: str) -> tuple[Any, ...]:
        timeout = job.timeout
        labels = job.labels
        created = sqlite_time(job.create_time)
        run_after = job.run_after
        return (
            job.id, job.owner, job.job_type, job.priority,
            job.input.type_url, job.input.value, json.dumps(dict(labels)) if labels else "{}",
            job.request_id, fingerprint if job.request_id else None, job.dedupe_key,
            job.max_attempts, timeout.total_seconds() if timeout is not None else None,
            created, created,
            created if run_after is job.create_time else sqlite_time(run_after),
            job.notify_url,
        )  # fmt: skip

    async def insert_claimed(self, conn: AsyncConnection, items: Sequence[HandedOff]) -> list[bool]:
        return await self.insert_claimed_by(within(conn), items)

    async def insert_claimed_by(self, hop: Hop, items: Sequence[HandedOff]) -> list[bool]:
        time = sqlite_time
        moment, types = _ahead_of(items)
        ahead_sql = self._ahead.get(len(types))
        if ahead_sql is None:
            marks = ", ".join("?" * len(types))
            ahead_sql = self._ahead.setdefault(len(types), SQLITE_AHEAD.format(marks=marks))
        ahead_args = (time(moment), *types)
        rows = [self._row(job, fingerprint) for job, fingerprint, _ in items]
        claims = []
        attempts = []
        for (job, _, g), row in zip(items, rows, strict=True):
            at = time(g.now)
            # update_time is the claim's
            claims.append(
                (*row[:13], at, *row[14:], g.worker_id, g.lease_token, time(g.lease_expires_at), at)
            )
            attempts.append((job.id, g.worker_id, g.lease_token, at))
        labels = _labels(items)
        priorities = [job.priority for job, _, _ in items]

        def run(db: sqlite3.Connection) -> list[bool]:
            found = db.execute(ahead_sql, ahead_args).fetchone()
            claimed = [found is None or p > found[0] for p in priorities]
            db.executemany(
                SQLITE_INSERT_CLAIMED, [c for c, ok in zip(claims, claimed, strict=True) if ok]
            )
            db.executemany(
                SQLITE_ATTEMPT, [a for a, ok in zip(attempts, claimed, strict=True) if ok]
            )
            queued = [r for r, ok in zip(rows, claimed, strict=True) if not ok]
            if queued:
                db.executemany(SQLITE_INSERT, queued)
            if labels:
                db.executemany(SQLITE_LABELS, labels)
            return claimed

        return await hop(SQLITE_INSERT_CLAIMED, run)

    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        await self.insert_by(within(conn), items)

    async def insert_by(self, hop: Hop, items: Sequence[tuple[NewJob, str]]) -> None:
        rows = [self._row(job, fingerprint) for job, fingerprint in items]
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

    async def insert_claimed(self, items: Sequence[HandedOff]) -> list[bool]:
        return await self._statements.insert_claimed_by(self._hop, items)


class _PostgresOne:
    def __init__(self, statements: _Postgres, run: Run, origin: str) -> None:
        self._statements = statements
        self._run = run
        self._origin = origin

    def _args(self, items: Sequence[tuple[NewJob, str]]) -> tuple[Any, ...]:
        labels = _labels(items)
        ids, keys, values = (
            [list(column) for column in zip(*labels, strict=True)] if labels else ([], [], [])
        )
        jobs = [job for job, _ in items]
        payload = pg_notify.encode(
            self._origin, [j.id for j in jobs], (), True, min(j.run_after for j in jobs)
        )
        return (*self._statements._columns(items), ids, keys, values, payload)

    async def insert(self, items: Sequence[tuple[NewJob, str]]) -> None:
        await self._run(PG_INSERT_NOTIFY, self._args(items))

    async def insert_fresh(self, items: Sequence[tuple[NewJob, str]]) -> bool:
        [(found, _)] = await self._run(PG_INSERT_FRESH, self._args(items))
        return int(found) == 0
