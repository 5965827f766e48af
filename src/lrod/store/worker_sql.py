"""The worker's hot statements (the claim, the finishing write of a batch) as
constant SQL per dialect, run at driver level inside the store's write
transaction: no statement building, compiling, cache-key hashing or result
machinery of SQLAlchemy per batch, and the fewest trips to the database.

- PostgreSQL (asyncpg): the claim is one statement (the due rows, their
  UPDATE and their attempts rows); a batch's finishing writes are one
  statement too (UNNEST arrays, as PgQueuer does): the fenced UPDATE of the
  operations and the closing of their attempts. `one_statement` runs each
  (and the pool's lease renewal) as a transaction of its own in autocommit,
  its NOTIFY folded into the statement (pg_notify.notify_cte): one round
  trip per write.
- SQLite (aiosqlite): the statements of a claim, or of a finishing batch, run
  in one hop to aiosqlite's thread on its plain sqlite3 connection (aiosqlite
  hops once per DBAPI call otherwise); `alone` runs a finishing batch, the
  claims and the attempts' progress heartbeats that came with it as ONE
  whole transaction in that one hop (BEGIN IMMEDIATE and COMMIT included).

Values go in and come out through the column types' own bind and result
processors (the same conversions SQLAlchemy applies), so the rows are what
`rows.to_operation` reads elsewhere. Driver errors are wrapped as SQLAlchemy's
DBAPIError, so `errors.translated_errors` sees them as it sees the rest.

Which of the two runs is chosen once per store (`for_dialect`).
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Column
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from lrod.domain.states import State
from lrod.store.dialect import (
    runs_on_asyncpg,
    sqlite_time,
    sqlite_time_read,
    stores_naive_datetimes,
)
from lrod.store.driver import Hop, asyncpg_fetch, at_once, within
from lrod.store.pg_notify import notify_cte
from lrod.store.schema import UTCDateTime
from lrod.store.statements import ATTEMPTS, T

_COLUMNS: tuple[Column[Any], ...] = tuple(T)
_NAMES = ", ".join(c.name for c in _COLUMNS)
OperationRecord = namedtuple("OperationRecord", [c.name for c in _COLUMNS])  # type: ignore[misc]

RUNNING = State.RUNNING.value
QUEUED = State.QUEUED.value


@dataclass(frozen=True)
class FinishWrite:
    """One attempt's finishing write as plain values (finishes.py makes it).
    A column group not set keeps the row's value."""

    op_id: str
    token: str
    now: datetime
    state: str
    # end_time, expire_time, error: a terminal move
    ends: bool
    end_time: datetime | None
    expire_time: datetime | None
    error: Any
    # result_type, result_value: a success
    has_result: bool
    result_type: str | None
    result_value: bytes | None
    has_progress: bool
    progress: tuple[int, int, str]
    has_last_error: bool
    last_attempt_error: Any
    has_run_after: bool
    run_after: datetime | None
    # a release: the attempt does not count
    releases: bool
    # the attempt's row
    outcome: str
    attempt_error: Any
    internal_error: str | None


@dataclass(frozen=True)
class ClaimAsk:
    """One claim: up to `limit` due jobs of `job_types`, leased to `worker`
    under `token` until `expires`."""

    now: datetime
    expires: datetime
    limit: int
    job_types: Sequence[str]
    worker: str
    token: str


@dataclass(frozen=True)
class BeatWrite:
    """One attempt's heartbeat: its lease extended to `expires` and, if
    given, its progress (completed, total, stage) written at `now`, fenced
    by `token` (the row still RUNNING under it)."""

    op_id: str
    token: str
    expires: datetime
    progress: tuple[int, int, str] | None
    now: datetime


class WorkerSql(Protocol):
    async def claim(self, conn: AsyncConnection, ask: ClaimAsk) -> list[Any]:
        """The claimed rows (as written)."""
        ...

    async def finish(self, conn: AsyncConnection, writes: Sequence[FinishWrite]) -> dict[str, Any]:
        """Each write fenced by its row's lease token (still RUNNING under
        it); the written rows by id, only of the writes that held. Ids are
        distinct."""
        ...


class WorkerSqlAlone(Protocol):
    """The same statements as one whole transaction of their own."""

    async def write(
        self,
        rounds: Sequence[Sequence[FinishWrite]],
        claims: Sequence[ClaimAsk],
        beats: Sequence[BeatWrite] = (),
    ) -> tuple[list[dict[str, Any]], list[list[Any]], list[bool | None]]:
        """Each heartbeat, then each round of finishing writes (as
        `WorkerSql.finish`), then each claim (as `WorkerSql.claim`), in ONE
        transaction, committed when this returns: the written rows of each
        round, the claimed rows of each claim, and of each heartbeat whether
        a cancel was requested (None: the row is no longer RUNNING under its
        token). The finishes go before the claims: a job they queue again
        can be claimed by the same transaction. The heartbeats go first: an
        attempt's finishing write follows its last heartbeat."""
        ...

    async def beat_within(
        self, conn: AsyncConnection, beats: Sequence[BeatWrite]
    ) -> list[bool | None]:
        """The heartbeats inside `conn`'s open transaction (as in `write`)."""
        ...


class WorkerSqlOne(Protocol):
    """PostgreSQL: each of the worker's writes as ONE statement that is a
    transaction of its own (autocommit), with its NOTIFY folded in (sent for
    the rows it changed, delivered at its commit): one round trip, where a
    transaction takes four (BEGIN, the statement, NOTIFY, COMMIT). A write
    that raises has written nothing (a single statement is atomic)."""

    async def claim(self, ask: ClaimAsk) -> list[Any]:
        """As `WorkerSql.claim`, committed when this returns."""
        ...

    async def finish(self, writes: Sequence[FinishWrite]) -> dict[str, Any]:
        """As `WorkerSql.finish`, committed when this returns (ReadBackFailed:
        committed, but its rows could not be read)."""
        ...

    async def finish_and_claim(
        self, writes: Sequence[FinishWrite], ask: ClaimAsk
    ) -> tuple[dict[str, Any], list[Any]]:
        """`finish(writes)` and `claim(ask)` as ONE statement (one commit,
        one NOTIFY): all of it written, or (it raises) none. The claim does
        not see what the finishes write (a job they queue again is left
        for the next claim)."""
        ...

    async def heartbeat(self, beat: BeatWrite) -> bool | None:
        """One attempt's heartbeat (BeatWrite), its progress announced:
        whether a cancel was requested, None if the row is no longer RUNNING
        under its token."""
        ...

    async def renew(
        self, ids: Sequence[str], tokens: Sequence[str], expires: datetime
    ) -> list[tuple[str, str, bool]]:
        """The lease of every RUNNING row of `ids` held under one of `tokens`
        extended to `expires`: (id, lease token, cancel requested) of each."""
        ...


class ReadBackFailed(Exception):
    """A one-statement write committed, but its rows could not be read back
    (a bug, not the database): it must not be run again."""


# One statement of constant SQL as a transaction of its own, its rows as
# the driver gives them (direct_reads.AsyncpgReader.run).
Run = Callable[[str, Sequence[Any]], Awaitable[list[Any]]]


def for_dialect(dialect: Dialect) -> WorkerSql:
    if runs_on_asyncpg(dialect):
        return _Postgres(dialect)
    return _Sqlite(dialect)


def alone(writer: AsyncEngine) -> WorkerSqlAlone | None:
    """Where the driver runs a whole write transaction in one trip (SQLite:
    one hop to aiosqlite's thread), the writes as transactions of their own;
    None where the store's `_write` transaction serves as well (PostgreSQL:
    one statement each already, BEGIN and COMMIT on the same socket)."""
    if runs_on_asyncpg(writer.dialect):
        return None
    return _SqliteAlone(_Sqlite(writer.dialect), at_once(writer))


def one_statement(dialect: Dialect, run: Run | None, origin: str) -> WorkerSqlOne | None:
    """On PostgreSQL (given `run`), the worker's writes as one statement
    each, their NOTIFY naming `origin`; None elsewhere."""
    if run is None or not runs_on_asyncpg(dialect):
        return None
    return _PostgresOne(_Postgres(dialect), run, origin)


class _Processors:
    """The column types' own conversions for one dialect. On SQLite the
    datetimes' are lrod's own (dialect.sqlite_time, sqlite_time_read: the
    same text and values as SQLAlchemy's chain of UTCDateTime over DATETIME,
    at less than half its CPU; a claimed and a finished row hold seven
    datetimes each, a finishing write binds four)."""

    def __init__(self, dialect: Dialect) -> None:
        naive = stores_naive_datetimes(dialect)

        def bind(column: Column[Any]) -> Callable[[Any], Any]:
            if naive and isinstance(column.type, UTCDateTime):
                return _sqlite_bind_time
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            return process if process is not None else _same

        def result(column: Column[Any]) -> Callable[[Any], Any] | None:
            if naive and isinstance(column.type, UTCDateTime):
                return sqlite_time_read
            if naive and column is T.labels:
                return _no_labels_at_once(
                    column.type.dialect_impl(dialect).result_processor(dialect, None)
                )
            # asyncpg hands back native values (json decoded by the codec
            # SQLAlchemy installs on its connections): only the UTC
            # normalisation of datetimes is left to do.
            if runs_on_asyncpg(dialect) and not isinstance(column.type, UTCDateTime):
                return None
            return column.type.dialect_impl(dialect).result_processor(dialect, None)

        self.result = tuple(result(c) for c in _COLUMNS)
        # Only the columns that have a conversion are visited per row.
        self._converted = tuple((i, p) for i, p in enumerate(self.result) if p is not None)
        self._width = len(_COLUMNS)
        self.time = bind(T.update_time)
        self.json = bind(T.error)
        self.attempt_time = bind(ATTEMPTS.c.end_time)
        self.attempt_json = bind(ATTEMPTS.c.error)

    def record(self, raw: Sequence[Any]) -> Any:
        values = list(raw)
        if len(values) != self._width:
            raise ValueError(f"a row of {len(values)} columns for {self._width}")
        for index, process in self._converted:
            value = values[index]
            if value is not None:
                values[index] = process(value)
        return OperationRecord._make(values)


def _same(value: Any) -> Any:
    return value


def _sqlite_bind_time(value: datetime | None) -> str | None:
    return None if value is None else sqlite_time(value)


def _no_labels_at_once(process: Callable[[Any], Any] | None) -> Callable[[Any], Any]:
    """SQLite's labels: most jobs have none, stored as '{}' (a new dict
    without json.loads, a fifth of its CPU); any other text decoded by
    `process` (SQLAlchemy's JSON)."""
    assert process is not None

    def read(value: Any) -> Any:
        return {} if value == "{}" else process(value)

    return read


# -- PostgreSQL -----------------------------------------------------------


def _pg_claimed(first: int) -> str:
    """The claim's CTEs (`due`, `claimed`, `opened`), its six parameters
    numbered from `first`: now, job types, limit, worker, token, expires."""
    now, types, limit, worker, token, expires = (f"${first + i}" for i in range(6))
    return f"""due AS MATERIALIZED (
  SELECT id FROM operations
   WHERE state = '{QUEUED}' AND run_after <= {now} AND job_type = ANY({types}::text[])
   ORDER BY priority DESC, run_after, create_time
   LIMIT {limit}
   FOR UPDATE SKIP LOCKED),
claimed AS (
  UPDATE operations SET state = '{RUNNING}', attempt = attempt + 1,
         lease_owner = {worker}, lease_token = {token}, lease_expires_at = {expires},
         start_time = coalesce(start_time, {now}), update_time = {now}, version = version + 1
   WHERE id IN (SELECT id FROM due) AND state = '{QUEUED}'
  RETURNING {_NAMES}),
opened AS (
  INSERT INTO attempts (operation_id, number, worker_id, lease_token, start_time, outcome)
  SELECT id, attempt, {worker}, {token}, {now}, '{RUNNING}' FROM claimed)"""


_PG_CLAIMED = f"WITH {_pg_claimed(1)}"
PG_CLAIM = f"{_PG_CLAIMED}\nSELECT {_NAMES} FROM claimed\n"
# The same as one statement of its own, its NOTIFY ($7: the store's origin)
# in it: the one-row count makes the outer SELECT read `note`.
PG_CLAIM_NOTIFY = f"""{_PG_CLAIMED},
{notify_cte("claimed", "$7", queued_again=False)}
SELECT claimed.* FROM claimed CROSS JOIN (SELECT count(*) FROM note) AS sent
"""

_PG_FINISHED = f"""
WITH i AS (
  SELECT * FROM unnest(
    $1::text[], $2::text[], $3::timestamptz[], $4::text[],
    $5::bool[], $6::timestamptz[], $7::timestamptz[], $8::text[],
    $9::bool[], $10::text[], $11::bytea[],
    $12::bool[], $13::bigint[], $14::bigint[], $15::text[],
    $16::bool[], $17::text[], $18::bool[], $19::timestamptz[], $20::bool[],
    $21::text[], $22::text[], $23::text[])
  AS i(id, token, now, state,
       ends, end_time, expire_time, error,
       has_result, result_type, result_value,
       has_progress, p_completed, p_total, p_stage,
       has_last_error, last_error, has_run_after, run_after, releases,
       outcome, a_error, a_internal)),
done AS (
  UPDATE operations o SET
    state = i.state,
    end_time = CASE WHEN i.ends THEN i.end_time ELSE o.end_time END,
    expire_time = CASE WHEN i.ends THEN i.expire_time ELSE o.expire_time END,
    error = CASE WHEN i.ends THEN i.error::json ELSE o.error END,
    result_type = CASE WHEN i.has_result THEN i.result_type ELSE o.result_type END,
    result_value = CASE WHEN i.has_result THEN i.result_value ELSE o.result_value END,
    progress_completed = CASE WHEN i.has_progress THEN i.p_completed ELSE o.progress_completed END,
    progress_total = CASE WHEN i.has_progress THEN i.p_total ELSE o.progress_total END,
    progress_stage = CASE WHEN i.has_progress THEN i.p_stage ELSE o.progress_stage END,
    last_attempt_error = CASE WHEN i.has_last_error THEN i.last_error::json
                              ELSE o.last_attempt_error END,
    run_after = CASE WHEN i.has_run_after THEN i.run_after ELSE o.run_after END,
    attempt = o.attempt - CASE WHEN i.releases THEN 1 ELSE 0 END,
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
    update_time = i.now, version = o.version + 1
  FROM i
  WHERE o.id = i.id AND o.lease_token = i.token AND o.state = '{RUNNING}'
  RETURNING {", ".join(f"o.{c.name}" for c in _COLUMNS)}),
closed AS (
  UPDATE attempts a SET end_time = i.now, outcome = i.outcome,
         error = i.a_error::json, internal_error = i.a_internal
    FROM done JOIN i ON i.id = done.id
   WHERE a.operation_id = i.id AND a.lease_token = i.token)"""
PG_FINISH = f"{_PG_FINISHED}\nSELECT * FROM done\n"
PG_FINISH_NOTIFY = f"""{_PG_FINISHED},
{notify_cte("done", "$24", queued_again=True)}
SELECT done.* FROM done CROSS JOIN (SELECT count(*) FROM note) AS sent
"""
# A batch's finishing writes and a claim asked meanwhile as ONE statement
# (one commit): finish $1-$23, claim $24-$29, origin $30. Each row comes back
# marked (true: written by a finish). The claim's snapshot is the
# statement's: a job its finishes queue again is not claimed by it (the
# NOTIFY's work wakes the claim loops for it). The two touch disjoint rows:
# the finishes RUNNING ones, the claim QUEUED ones.
PG_FINISH_CLAIM_NOTIFY = f"""{_PG_FINISHED},
{_pg_claimed(24)},
changed AS (
  SELECT id, state, run_after FROM done
  UNION ALL SELECT id, state, run_after FROM claimed),
{notify_cte("changed", "$30", queued_again=True)}
SELECT w.* FROM (SELECT true AS finished, done.* FROM done
                 UNION ALL SELECT false, claimed.* FROM claimed) AS w
 CROSS JOIN (SELECT count(*) FROM note) AS sent
"""
# One attempt's heartbeat: its lease renewed and, with $4, its progress
# written ($5-$7, at $8: a change, announced with $9 the origin).
PG_HEARTBEAT_NOTIFY = f"""
WITH beat AS (
  UPDATE operations SET lease_expires_at = $3,
         progress_completed = CASE WHEN $4::bool THEN $5::bigint ELSE progress_completed END,
         progress_total = CASE WHEN $4::bool THEN $6::bigint ELSE progress_total END,
         progress_stage = CASE WHEN $4::bool THEN $7::text ELSE progress_stage END,
         update_time = CASE WHEN $4::bool THEN $8::timestamptz ELSE update_time END,
         version = version + CASE WHEN $4::bool THEN 1 ELSE 0 END
   WHERE id = $1 AND lease_token = $2 AND state = '{RUNNING}'
  RETURNING id, cancel_requested),
progressed AS (SELECT id FROM beat WHERE $4::bool),
{notify_cte("progressed", "$9", queued_again=False)}
SELECT beat.cancel_requested FROM beat CROSS JOIN (SELECT count(*) FROM note) AS sent
"""
# The pool's heartbeat: every lease it holds renewed (nothing to announce).
PG_RENEW = f"""
UPDATE operations SET lease_expires_at = $3
 WHERE id = ANY($1::text[]) AND lease_token = ANY($2::text[]) AND state = '{RUNNING}'
RETURNING id, lease_token, cancel_requested
"""


class _Postgres:
    def __init__(self, dialect: Dialect) -> None:
        self._p = _Processors(dialect)

    async def claim(self, conn: AsyncConnection, ask: ClaimAsk) -> list[Any]:
        raws = await asyncpg_fetch(conn, PG_CLAIM, self.claim_args(ask))
        return [self._p.record(raw) for raw in raws]

    async def finish(self, conn: AsyncConnection, writes: Sequence[FinishWrite]) -> dict[str, Any]:
        raws = await asyncpg_fetch(conn, PG_FINISH, self.finish_args(writes))
        return self.written(raws)

    def claim_args(self, ask: ClaimAsk) -> tuple[Any, ...]:
        time = self._p.time
        return (
            time(ask.now), list(ask.job_types), ask.limit, ask.worker, ask.token, time(ask.expires)
        )  # fmt: skip

    def written(self, raws: Sequence[Any]) -> dict[str, Any]:
        records = [self._p.record(raw) for raw in raws]
        return {r.id: r for r in records}

    def records(self, raws: Sequence[Any]) -> list[Any]:
        return [self._p.record(raw) for raw in raws]

    def time(self, moment: datetime) -> Any:
        return self._p.time(moment)

    def finish_args(self, writes: Sequence[FinishWrite]) -> tuple[Any, ...]:
        time, js, ajs = self._p.time, self._p.json, self._p.attempt_json
        return (
            [w.op_id for w in writes],
            [w.token for w in writes],
            [time(w.now) for w in writes],
            [w.state for w in writes],
            [w.ends for w in writes],
            [time(w.end_time) if w.ends else None for w in writes],
            [time(w.expire_time) if w.ends else None for w in writes],
            [js(w.error) if w.ends else None for w in writes],
            [w.has_result for w in writes],
            [w.result_type for w in writes],
            [w.result_value for w in writes],
            [w.has_progress for w in writes],
            [w.progress[0] for w in writes],
            [w.progress[1] for w in writes],
            [w.progress[2] for w in writes],
            [w.has_last_error for w in writes],
            [js(w.last_attempt_error) if w.has_last_error else None for w in writes],
            [w.has_run_after for w in writes],
            [time(w.run_after) if w.has_run_after else None for w in writes],
            [w.releases for w in writes],
            [w.outcome for w in writes],
            [ajs(w.attempt_error) for w in writes],
            [w.internal_error for w in writes],
        )


class _PostgresOne:
    """The worker's writes, each ONE statement run as a transaction of its
    own (autocommit: BEGIN and COMMIT cost no round trip), its NOTIFY in it."""

    def __init__(self, statements: _Postgres, run: Run, origin: str) -> None:
        self._statements = statements
        self._run = run
        self._origin = origin

    async def claim(self, ask: ClaimAsk) -> list[Any]:
        args = (*self._statements.claim_args(ask), self._origin)
        return self._statements.records(await self._run(PG_CLAIM_NOTIFY, args))

    async def finish(self, writes: Sequence[FinishWrite]) -> dict[str, Any]:
        args = (*self._statements.finish_args(writes), self._origin)
        raws = await self._run(PG_FINISH_NOTIFY, args)
        try:
            return self._statements.written(raws)
        except Exception as error:
            raise ReadBackFailed() from error

    async def finish_and_claim(
        self, writes: Sequence[FinishWrite], ask: ClaimAsk
    ) -> tuple[dict[str, Any], list[Any]]:
        statements = self._statements
        args = (*statements.finish_args(writes), *statements.claim_args(ask), self._origin)
        raws = await self._run(PG_FINISH_CLAIM_NOTIFY, args)
        try:
            written = statements.written([raw[1:] for raw in raws if raw[0]])
            return written, statements.records([raw[1:] for raw in raws if not raw[0]])
        except Exception as error:
            raise ReadBackFailed() from error

    async def heartbeat(self, beat: BeatWrite) -> bool | None:
        time = self._statements.time
        progress = beat.progress
        completed, total, stage = progress if progress is not None else (0, 0, "")
        args = (
            beat.op_id, beat.token, time(beat.expires), progress is not None,
            completed, total, stage, time(beat.now), self._origin,
        )  # fmt: skip
        rows = await self._run(PG_HEARTBEAT_NOTIFY, args)
        return bool(rows[0][0]) if rows else None

    async def renew(
        self, ids: Sequence[str], tokens: Sequence[str], expires: datetime
    ) -> list[tuple[str, str, bool]]:
        args = (list(ids), list(tokens), self._statements.time(expires))
        return [(r[0], r[1], r[2]) for r in await self._run(PG_RENEW, args)]


# -- SQLite ----------------------------------------------------------------

_SQLITE_ATTEMPT = (
    "INSERT INTO attempts (operation_id, number, worker_id, lease_token, start_time, outcome) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SQLITE_FINISH = f"""
UPDATE operations SET
  state = ?,
  end_time = CASE WHEN ? THEN ? ELSE end_time END,
  expire_time = CASE WHEN ? THEN ? ELSE expire_time END,
  error = CASE WHEN ? THEN ? ELSE error END,
  result_type = CASE WHEN ? THEN ? ELSE result_type END,
  result_value = CASE WHEN ? THEN ? ELSE result_value END,
  progress_completed = CASE WHEN ? THEN ? ELSE progress_completed END,
  progress_total = CASE WHEN ? THEN ? ELSE progress_total END,
  progress_stage = CASE WHEN ? THEN ? ELSE progress_stage END,
  last_attempt_error = CASE WHEN ? THEN ? ELSE last_attempt_error END,
  run_after = CASE WHEN ? THEN ? ELSE run_after END,
  attempt = attempt - ?,
  lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
  update_time = ?, version = version + 1
WHERE id = ? AND lease_token = ? AND state = '{RUNNING}'
RETURNING {_NAMES}
"""
_SQLITE_CLOSE = (
    "UPDATE attempts SET end_time = ?, outcome = ?, error = ?, internal_error = ? "
    "WHERE operation_id = ? AND lease_token = ?"
)


# A heartbeat: the lease, with or without the progress (announced, so the
# row's version moves), fenced as the finishing write is.
_SQLITE_BEAT = f"""
UPDATE operations SET lease_expires_at = ?
 WHERE id = ? AND lease_token = ? AND state = '{RUNNING}'
RETURNING cancel_requested
"""
_SQLITE_BEAT_PROGRESS = f"""
UPDATE operations SET lease_expires_at = ?,
       progress_completed = ?, progress_total = ?, progress_stage = ?,
       update_time = ?, version = version + 1
 WHERE id = ? AND lease_token = ? AND state = '{RUNNING}'
RETURNING cancel_requested
"""

# What a claim's wrapped error names.
_SQLITE_CLAIM_NAME = "UPDATE operations SET state = 'RUNNING' ... (a claim)"


def _sqlite_claim_sql(types: int) -> str:
    marks = ", ".join("?" * types)
    return f"""
UPDATE operations SET state = '{RUNNING}', attempt = attempt + 1,
       lease_owner = ?, lease_token = ?, lease_expires_at = ?,
       start_time = coalesce(start_time, ?), update_time = ?, version = version + 1
 WHERE id IN (
   SELECT id FROM operations
    WHERE state = '{QUEUED}' AND run_after <= ? AND job_type IN ({marks})
    ORDER BY priority DESC, run_after, create_time
    LIMIT ?)
   AND state = '{QUEUED}'
RETURNING {_NAMES}
"""


class _Sqlite:
    def __init__(self, dialect: Dialect) -> None:
        self._p = _Processors(dialect)
        self._claims: dict[int, str] = {}
        self._attempt_index = [c.name for c in _COLUMNS].index("attempt")

    async def claim(self, conn: AsyncConnection, ask: ClaimAsk) -> list[Any]:
        run = self._claim_statements(ask)
        return [self._p.record(raw) for raw in await within(conn)(_SQLITE_CLAIM_NAME, run)]

    async def finish(self, conn: AsyncConnection, writes: Sequence[FinishWrite]) -> dict[str, Any]:
        run = self._finish_statements(writes)
        return {r.id: r for r in map(self._p.record, await within(conn)(_SQLITE_FINISH, run))}

    async def write_by(
        self,
        hop: Hop,
        rounds: Sequence[Sequence[FinishWrite]],
        claims: Sequence[ClaimAsk],
        beats: Sequence[BeatWrite] = (),
    ) -> tuple[list[dict[str, Any]], list[list[Any]], list[bool | None]]:
        beating = self._beat_statements(beats)
        finishing = [self._finish_statements(writes) for writes in rounds]
        claiming = [self._claim_statements(ask) for ask in claims]

        def run(
            db: sqlite3.Connection,
        ) -> tuple[list[bool | None], list[list[Any]], list[list[Any]]]:
            beaten = beating(db)
            return beaten, [fn(db) for fn in finishing], [fn(db) for fn in claiming]

        name = _SQLITE_FINISH if rounds else _SQLITE_CLAIM_NAME if claims else _SQLITE_BEAT
        beaten, finished, claimed = await hop(name, run)
        record = self._p.record
        return (
            [{r.id: r for r in map(record, raws)} for raws in finished],
            [[record(raw) for raw in raws] for raws in claimed],
            beaten,
        )

    async def beat_by(self, hop: Hop, beats: Sequence[BeatWrite]) -> list[bool | None]:
        return await hop(_SQLITE_BEAT, self._beat_statements(beats))

    def _beat_statements(
        self, beats: Sequence[BeatWrite]
    ) -> Callable[[sqlite3.Connection], list[bool | None]]:
        time = self._p.time
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for b in beats:
            if b.progress is None:
                statements.append((_SQLITE_BEAT, (time(b.expires), b.op_id, b.token)))
            else:
                completed, total, stage = b.progress
                args = (time(b.expires), completed, total, stage, time(b.now), b.op_id, b.token)
                statements.append((_SQLITE_BEAT_PROGRESS, args))

        def run(db: sqlite3.Connection) -> list[bool | None]:
            beaten: list[bool | None] = []
            for sql, args in statements:
                raw = db.execute(sql, args).fetchone()
                beaten.append(None if raw is None else bool(raw[0]))
            return beaten

        return run

    def _claim_statements(self, ask: ClaimAsk) -> Callable[[sqlite3.Connection], list[Any]]:
        types = len(ask.job_types)
        sql = self._claims.get(types)
        if sql is None:
            sql = self._claims.setdefault(types, _sqlite_claim_sql(types))
        at = self._p.time(ask.now)
        worker, token = ask.worker, ask.token
        args = (worker, token, self._p.time(ask.expires), at, at, at, *ask.job_types, ask.limit)
        started = at if self._p.attempt_time is self._p.time else self._p.attempt_time(ask.now)
        number = self._attempt_index

        def run(db: sqlite3.Connection) -> list[Any]:
            raws = db.execute(sql, args).fetchall()
            db.executemany(
                _SQLITE_ATTEMPT,
                [(r[0], r[number], worker, token, started, RUNNING) for r in raws],
            )
            return raws

        return run

    def _finish_statements(
        self, writes: Sequence[FinishWrite]
    ) -> Callable[[sqlite3.Connection], list[Any]]:
        time, js, ajs = self._p.time, self._p.json, self._p.attempt_json
        # The write's moment is bound three times (update_time, the attempt's
        # end_time and, for a terminal move, end_time): converted once.
        same = self._p.attempt_time is time
        updates: list[tuple[Any, ...]] = []
        closes: list[tuple[Any, ...]] = []
        for w in writes:
            completed, total, stage = w.progress
            now = time(w.now)
            ended = (now if w.end_time is w.now else time(w.end_time)) if w.ends else None
            updates.append(
                (
                    w.state,
                    w.ends, ended,
                    w.ends, time(w.expire_time) if w.ends else None,
                    w.ends, js(w.error) if w.ends else None,
                    w.has_result, w.result_type,
                    w.has_result, w.result_value,
                    w.has_progress, completed,
                    w.has_progress, total,
                    w.has_progress, stage,
                    w.has_last_error, js(w.last_attempt_error) if w.has_last_error else None,
                    w.has_run_after, time(w.run_after) if w.has_run_after else None,
                    1 if w.releases else 0,
                    now,
                    w.op_id, w.token,
                )
            )  # fmt: skip
            closes.append(
                (
                    now if same else self._p.attempt_time(w.now),
                    w.outcome,
                    ajs(w.attempt_error),
                    w.internal_error,
                    w.op_id,
                    w.token,
                )
            )

        def run(db: sqlite3.Connection) -> list[Any]:
            written = []
            held = []
            for update, close in zip(updates, closes, strict=True):
                raw = db.execute(_SQLITE_FINISH, update).fetchone()
                if raw is not None:
                    written.append(raw)
                    held.append(close)
            if held:
                db.executemany(_SQLITE_CLOSE, held)
            return written

        return run


class _SqliteAlone:
    def __init__(self, statements: _Sqlite, hop: Hop) -> None:
        self._statements = statements
        self._hop = hop

    async def write(
        self,
        rounds: Sequence[Sequence[FinishWrite]],
        claims: Sequence[ClaimAsk],
        beats: Sequence[BeatWrite] = (),
    ) -> tuple[list[dict[str, Any]], list[list[Any]], list[bool | None]]:
        return await self._statements.write_by(self._hop, rounds, claims, beats)

    async def beat_within(
        self, conn: AsyncConnection, beats: Sequence[BeatWrite]
    ) -> list[bool | None]:
        return await self._statements.beat_by(within(conn), beats)
