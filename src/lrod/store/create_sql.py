"""The INSERT of new operations (and their labels) as constant SQL per
dialect, run at driver level inside the store's write transaction, as the
worker's statements are (worker_sql.py): no parameter construction or bind
processing by SQLAlchemy per row, and one trip for any number of rows.

- PostgreSQL (asyncpg): one statement, the rows as UNNEST arrays (one
  prepared statement whatever the batch size), a column that every row
  shares sent once as a scalar instead (SHARED: the same statement for any
  mix); the labels, when there are any, in a second one (in the same one
  where the statement is a transaction of its own: `one_statement`).
- SQLite (aiosqlite): sqlite3's executemany of the operations and of their
  labels, in one hop to aiosqlite's thread; `alone` runs it as a whole
  transaction in that one hop (BEGIN IMMEDIATE and COMMIT included). A
  shared value is bound again for each row there: executemany binds a
  row's tuple in C, a repeated value costing what a distinct one does, and
  there are no arrays to build or encode, so SHARED has nothing to save.

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
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
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

# The values every PostgreSQL create reads per row: (column, SQL type), in
# the order of their arrays ($1-$15) and of `_Postgres._columns`.
_ROW = (
    ("id", "text"), ("owner", "text"), ("job_type", "text"), ("priority", "int"),
    ("input_type", "text"), ("input_value", "bytea"), ("labels", "text"), ("request_id", "text"),
    ("request_fingerprint", "text"), ("dedupe_key", "text"), ("max_attempts", "int"),
    ("timeout_seconds", "float8"), ("create_time", "timestamptz"), ("run_after", "timestamptz"),
    ("notify_url", "text"),
)  # fmt: skip

# What a batch sends once: the columns that go as ONE scalar parameter when
# every row of the statement has the same value, instead of an array of it.
# A BatchSubmit's members share all but their ids as a rule (one owner, one
# `now` for create_time and run_after; sent alike, one job type, input,
# labels, priority, webhook; no request_ids, or one batch fingerprint), and
# building and encoding a value per row and column is most of the client's
# CPU for a create (the server decodes fewer elements too). Every column
# but the id, which no two rows share; request_id and dedupe_key are shared
# only when none is set (set ones differ within a statement:
# creates.fresh_plan). A shared column's array is sent empty and its scalar
# holds the value (NULL too); a varying column's array holds every row's
# value and its scalar is NULL and unread. `cardinality(array) = 0` picks,
# so ONE constant statement serves any mix of shared and varying columns
# (a statement has at least one row: a varying column's array is never
# empty). `_Postgres._columns` decides per call, by this set alone.
SHARED = frozenset(name for name, _ in _ROW) - {"id"}
_LABELS = [name for name, _ in _ROW].index("labels")


def _rows(scalars_from: int, more: Sequence[tuple[str, str]] = ()) -> str:
    """The SELECT of the rows to insert, as `r`'s columns (`_ROW`'s, then
    `more`'s, per row always): their arrays $1.. in that order, and the
    SHARED columns' scalars from $`scalars_from` on, in `_ROW`'s order."""
    columns = (*_ROW, *more)
    arrays, picks = [], []
    scalar = scalars_from
    for n, (name, kind) in enumerate(columns, 1):
        arrays.append(f"${n}::{kind}[]")
        if name in SHARED and n <= len(_ROW):
            picks.append(
                f"CASE WHEN cardinality(${n}::{kind}[]) = 0 THEN ${scalar}::{kind}"
                f" ELSE r.{name} END AS {name}"
            )
            scalar += 1
        else:
            picks.append(f"r.{name}")
    names = ", ".join(name for name, _ in columns)
    listed = ",\n         ".join(picks)
    return f"SELECT {listed}\n    FROM unnest({', '.join(arrays)})\n      AS r({names})"


def _insert(rows: str) -> str:
    """The INSERT of the operations `rows` (a `_rows` SELECT) holds."""
    return f"""INSERT INTO operations ({_SET})
SELECT id, owner, job_type, '{QUEUED}', priority, input_type, input_value, labels::json,
       request_id, request_fingerprint, dedupe_key, 0, max_attempts, timeout_seconds,
       create_time, create_time, run_after, false, 0, 0, '', 1, notify_url
  FROM ({rows}) AS i"""


# The arrays $1-$15, the shared columns' scalars from $16 on.
PG_INSERT = _insert(_rows(16))
PG_LABELS = """
INSERT INTO operation_labels (operation_id, key, value)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
"""

# The labels' rows of the one-statement creates: per label of each row, its
# (operation id, key, value) in $16-$18; or, where the rows share their
# labels (the labels column is SHARED for the statement), the shared
# labels' keys and values alone in $17-$18 ($16 empty), each row's id
# ($1) with each of them.
_LABEL_ROWS = """SELECT * FROM unnest($16::text[], $17::text[], $18::text[])
   WHERE cardinality($16::text[]) > 0
  UNION ALL
  SELECT i, k, v FROM unnest($1::text[]) AS i, unnest($17::text[], $18::text[]) AS l(k, v)
   WHERE cardinality($16::text[]) = 0"""

# Submit's create as ONE statement of its own (autocommit: no BEGIN or
# COMMIT round trip), its labels ($16-$18, `_LABEL_ROWS`) and its NOTIFY
# ($19: the payload, made from the jobs, since every row goes in or, the
# statement failing, none) in it; the shared columns' scalars from $20 on.
PG_INSERT_NOTIFY = f"""
WITH stored AS ({_insert(_rows(20))}),
labelled AS (
  INSERT INTO operation_labels (operation_id, key, value)
  {_LABEL_ROWS})
SELECT pg_notify('{pg_notify.CHANNEL}', $19)
"""

# The same with request_ids or dedupe keys (Submit's group commit, a
# BatchSubmit): ONE statement that stores every row, with its labels and its
# NOTIFY, if none of them repeats a stored request_id or an active dedupe key
# (`found`), and else stores nothing; it returns how many it found. All
# rows or none either way; a concurrent writer's row, committed after the
# statement's snapshot, fails it on the unique index (IntegrityError), as
# it fails the INSERT of the transaction path. Parameters as
# PG_INSERT_NOTIFY's.
PG_INSERT_FRESH = f"""
WITH i AS ({_rows(20)}),
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
  SELECT * FROM ({_LABEL_ROWS}) AS l WHERE NOT EXISTS (SELECT FROM found)),
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

# The hand-offs' per row ($16-$19, after `_ROW`'s arrays).
_GRANT = (("worker", "text"), ("token", "text"), ("now", "timestamptz"), ("expires", "timestamptz"))

# The arrays $1-$19, the claim's moment and job types $20-$21, the shared
# columns' scalars from $22 on.
PG_INSERT_CLAIMED = f"""
WITH ahead AS (
  SELECT priority FROM operations
   WHERE state = '{QUEUED}' AND run_after <= $20 AND job_type = ANY($21::text[])
   ORDER BY priority DESC, run_after, create_time
   LIMIT 1),
i AS (
  SELECT *, NOT EXISTS (SELECT 1 FROM ahead WHERE ahead.priority >= i.priority) AS claimed
    FROM ({_rows(22, _GRANT)}) AS i),
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


def _in_one_order(labels: list[Mapping[str, str]]) -> bool:
    """Whether labels equal to the first (mappings: equal in any order) are
    in its order too, as their JSON keeps it."""
    first = labels[0]
    keys = list(first)
    return all(value is first or list(value) == keys for value in labels)


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

    def _columns(self, items: Sequence[tuple[NewJob, str]]) -> tuple[list[Any], list[Any]]:
        """The jobs' columns as the statements' parameters (`_rows`): an
        array per `_ROW` column, and a scalar per SHARED one; a SHARED
        column whose value every row has goes as that scalar, its array
        empty; any other column as an array of each row's value (the
        scalar None, unread). Values converted as the column types' bind
        processors convert them, each shared one once."""
        time, js = self._time, self._json
        jobs = [job for job, _ in items]
        # Each distinct time converted once: a group commit's Submits often
        # share create_time with run_after.
        times: dict[datetime, Any] = {}

        def at(moment: datetime) -> Any:
            value = times.get(moment)
            if value is None:
                value = times[moment] = time(moment)
            return value

        def labels(value: Mapping[str, str]) -> Any:
            return js(dict(value)) if value else "{}"

        def seconds(timeout: timedelta | None) -> float | None:
            return timeout.total_seconds() if timeout is not None else None

        # Per `_ROW` column: the rows' values as the jobs hold them, and
        # their conversion (None: as they are).
        columns: tuple[tuple[list[Any], Callable[[Any], Any] | None], ...] = (
            ([j.id for j in jobs], None),
            ([j.owner for j in jobs], None),
            ([j.job_type for j in jobs], None),
            ([j.priority for j in jobs], None),
            ([j.input.type_url for j in jobs], None),
            ([j.input.value for j in jobs], None),
            ([j.labels for j in jobs], labels),
            ([j.request_id for j in jobs], None),
            ([fp if job.request_id else None for job, fp in items], None),
            ([j.dedupe_key for j in jobs], None),
            ([j.max_attempts for j in jobs], None),
            ([j.timeout for j in jobs], seconds),
            ([j.create_time for j in jobs], at),
            ([j.run_after for j in jobs], at),
            ([j.notify_url for j in jobs], None),
        )
        count = len(jobs)
        arrays: list[Any] = []
        scalars: list[Any] = []
        for (name, _), (values, convert) in zip(_ROW, columns, strict=True):
            shared = name in SHARED
            first = values[0]
            # Every row's value stored as the first's is (labels: in its order).
            if (
                shared
                and values.count(first) == count
                and (convert is not labels or _in_one_order(values))
            ):
                arrays.append([])
                scalars.append(first if convert is None else convert(first))
                continue
            arrays.append(values if convert is None else [convert(v) for v in values])
            if shared:
                scalars.append(None)
        return arrays, scalars

    async def insert(self, conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]) -> None:
        arrays, scalars = self._columns(items)
        await asyncpg_fetch(conn, PG_INSERT, (*arrays, *scalars))
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
        arrays, scalars = self._columns([(job, fp) for job, fp, _ in items])
        args = (
            *arrays,
            [g.worker_id for g in grants],
            [g.lease_token for g in grants],
            [time(g.now) for g in grants],
            [time(g.lease_expires_at) for g in grants],
            time(moment),
            types,
            *scalars,
        )
        rows = await asyncpg_fetch(conn, PG_INSERT_CLAIMED, args)
        await self._insert_labels(conn, items)
        claimed = {row[0] for row in rows}
        return [job.id in claimed for job in jobs]


class _TimeText:
    """dialect.sqlite_time, remembering the last moment converted: the jobs
    of one create share their create_time (one clock reading per
    BatchSubmit), so a batch converts it once instead of once per row (0.9
    of the 1.1 us a row took to build)."""

    __slots__ = ("_moment", "_text")

    def __init__(self) -> None:
        self._moment: datetime | None = None
        self._text = ""

    def __call__(self, moment: datetime) -> str:
        if moment is not self._moment:
            self._text = sqlite_time(moment)
            self._moment = moment
        return self._text


class _Sqlite:
    """Values converted here, once per row, as SQLAlchemy's processors would
    (dialect.sqlite_time, json.dumps of the labels): its per-value
    processor chain (UTCDateTime, then DATETIME's format) cost about twice
    the whole row."""

    def __init__(self, dialect: Dialect) -> None:
        self._ahead: dict[int, str] = {}

    @staticmethod
    def _row(job: NewJob, fingerprint: str, time: _TimeText) -> tuple[Any, ...]:
        timeout = job.timeout
        labels = job.labels
        created = time(job.create_time)
        run_after = job.run_after
        return (
            job.id, job.owner, job.job_type, job.priority,
            job.input.type_url, job.input.value, json.dumps(dict(labels)) if labels else "{}",
            job.request_id, fingerprint if job.request_id else None, job.dedupe_key,
            job.max_attempts, timeout.total_seconds() if timeout is not None else None,
            created, created,
            created if run_after is job.create_time else time(run_after),
            job.notify_url,
        )  # fmt: skip

    def _rows(self, jobs: Iterable[tuple[NewJob, str]]) -> list[tuple[Any, ...]]:
        time = _TimeText()
        return [self._row(job, fingerprint, time) for job, fingerprint in jobs]

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
        rows = self._rows((job, fingerprint) for job, fingerprint, _ in items)
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
        rows = self._rows(items)
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
        arrays, scalars = self._statements._columns(items)
        jobs = [job for job, _ in items]
        ids: list[str] = []
        if not arrays[_LABELS]:  # shared by every row (`_LABEL_ROWS`)
            keys, values = list(jobs[0].labels), list(jobs[0].labels.values())
        else:
            labels = _labels(items)
            ids, keys, values = (
                [list(column) for column in zip(*labels, strict=True)] if labels else ([], [], [])
            )
        payload = pg_notify.encode(
            self._origin, arrays[0], (), True, min(j.run_after for j in jobs)
        )
        return (*arrays, ids, keys, values, payload, *scalars)

    async def insert(self, items: Sequence[tuple[NewJob, str]]) -> None:
        await self._run(PG_INSERT_NOTIFY, self._args(items))

    async def insert_fresh(self, items: Sequence[tuple[NewJob, str]]) -> bool:
        [(found, _)] = await self._run(PG_INSERT_FRESH, self._args(items))
        return int(found) == 0
