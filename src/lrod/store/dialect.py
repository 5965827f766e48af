"""What differs between SQLite and PostgreSQL, in one module: the drivers a
URL runs on, SQLite's connection settings and write transactions, how a
migration runs on each, and the few column and index choices of the schema.
Everything else in the store compiles the same SQL for both (SQLAlchemy is
the adapter); lrod.store.engine builds its engines from these choices and
re-exports the URL helpers. No I/O at import.

The migrations' version files keep the DDL they were written with (history
does not change); new ones use `partial_index` and `AUTOINCREMENT_ID`."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    BigInteger,
    Connection,
    Dialect,
    Engine,
    Integer,
    create_engine,
    event,
    exc,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import await_

from lrod.store.group_commit import LINGER_FROM

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_EXAMPLE = "sqlite:///lrod.db or postgresql://USER@HOST/DB"
# Serialises concurrent upgrades on PostgreSQL (several processes starting at once).
_PG_LOCK_KEY = 0x6C726F64  # "lrod"
# SQLite's write transactions take the write lock at BEGIN, so writers queue
# instead of failing half-way with "database is locked".
SQLITE_BEGIN = "BEGIN IMMEDIATE"


# -- URLs and drivers ---------------------------------------------------------
def backend(url: str | URL) -> str:
    """The database of a URL, driver aside: "sqlite" or "postgresql"."""
    return (make_url(url) if isinstance(url, str) else url).get_backend_name()


def is_sqlite(url: str | URL) -> bool:
    return backend(url) == SQLITE


def notifies(url: str | URL) -> bool:
    """Whether writes tell other processes with NOTIFY (PostgreSQL); SQLite's
    processes watch the file's data_version instead."""
    return backend(url) == POSTGRESQL


def url_problem(url: str) -> str | None:
    """What is wrong with a database URL before anything connects, with the
    fix; None if it can be tried."""
    try:
        parsed = make_url(url)
    except Exception:
        return f"{url!r} is not a database URL; use {_EXAMPLE}"
    name = parsed.get_backend_name()
    if name not in (SQLITE, POSTGRESQL):
        return f"{name!r} databases are not supported; use {_EXAMPLE}"
    if name == SQLITE and parsed.database not in (None, "", ":memory:"):
        folder = os.path.dirname(os.path.abspath(parsed.database))
        if not os.path.isdir(folder):
            return f"the folder {folder} does not exist; create it or choose another path"
    return None


def sqlite_path(url: str) -> str | None:
    """The file of a SQLite URL (None for PostgreSQL or an in-memory one)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != SQLITE or parsed.database in (None, "", ":memory:"):
        return None
    return os.path.abspath(parsed.database)


def sync_url(url: str) -> URL:
    """The URL for synchronous tools (migrations)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == SQLITE:
        return parsed.set(drivername="sqlite")
    if parsed.get_backend_name() == POSTGRESQL:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database: {parsed.get_backend_name()}")


def async_url(url: str) -> URL:
    """The URL the service runs on. PostgreSQL goes through asyncpg: measured
    1.2-1.4x psycopg's rate for Submit and round trips (docs/architecture.md);
    psycopg serves migrations."""
    parsed = make_url(url)
    if parsed.get_backend_name() == SQLITE:
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.get_backend_name() == POSTGRESQL:
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database: {parsed.get_backend_name()}")


def libpq_dsn(url: URL) -> str:
    """A PostgreSQL URL as libpq, psycopg and asyncpg's own connect() take it
    (the LISTEN connection, the direct reads), password included."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# -- SQLite connections and transactions --------------------------------------
def configure_sqlite_connection(dbapi_connection: Any) -> None:
    """Durable WAL (synchronous=FULL: an acknowledged commit survives power loss)."""
    # pysqlite's own transaction handling is switched off so that ours
    # (BEGIN IMMEDIATE) is what runs.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=FULL",
        "PRAGMA busy_timeout=10000",
        # 64 MB of page cache per connection (SQLite's default is 2 MB): the
        # indexes of a million operations then stay in memory.
        "PRAGMA cache_size=-65536",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def configure_sqlite_engine(engine: Engine, *, begin: str | None = SQLITE_BEGIN) -> None:
    """Every connection of `engine` configured as above; with `begin`, each
    transaction started by that statement."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection)

    if begin is not None:

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            driver = connection.connection.driver_connection
            try:
                if isinstance(driver, sqlite3.Connection):  # a synchronous engine
                    driver.execute(begin)
                else:
                    # aiosqlite: one hop to its thread, where a SQLAlchemy
                    # statement takes three (cursor, execute, close), before
                    # every write transaction.
                    await_(driver._execute(driver._conn.execute, begin))
            except sqlite3.Error as error:
                raise exc.DBAPIError.instance(begin, (), error, sqlite3.Error) from error


def reset_open_transactions_only(engine: Engine) -> None:
    """For an engine made with `pool_reset_on_return=None`: a connection
    checked in inside a transaction is rolled back; one checked in clean
    costs nothing. (SQLAlchemy's own reset rolls back every connection its
    Connection did not commit itself: on aiosqlite one more hop after each
    of the one-hop transactions of driver.sqlite_transaction, which commit
    on the driver.)"""

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        if state.transaction_was_reset or not state.asyncio_safe:
            return
        driver = record.driver_connection  # sqlite3's, or aiosqlite's around it
        raw = driver if isinstance(driver, sqlite3.Connection) else driver._connection
        if raw is not None and raw.in_transaction:
            dbapi_connection.rollback()


class Linger(NamedTuple):
    """Submit's group commit under load: wait at most `seconds` for more
    creates, once its recent batches averaged `from_batch` or more."""

    seconds: float
    from_batch: float


def create_linger(url: str | URL) -> Linger:
    """How long, at most, Submit's group commit waits under load for more
    creates to join a flush, and from what mean batch size it counts as
    under load (lrod.store.group_commit). A flush costs the same whatever
    its size: on SQLite a commit and a thread hop, on PostgreSQL a round
    trip, a commit and a NOTIFY that every process's listener (this one's
    too) wakes for. SQLite: 5 ms, from a mean of 4. PostgreSQL: 5 ms, from
    a mean of 1.5: at 64 clients its flushes held 2-3 Submits (each out for
    1.5-4 ms), and lingering made them 6-7 at 0.8-0.9x the server CPU per
    Submit (bench/findings.md, day 9); a lone caller (batches of one)
    never waits."""
    return Linger(0.005, LINGER_FROM) if is_sqlite(url) else Linger(0.005, 1.5)


def runs_on_asyncpg(dialect: Dialect) -> bool:
    """Whether the store's connections are asyncpg's (PostgreSQL), else
    aiosqlite's (SQLite): the worker's driver-level statements
    (store/worker_sql.py) are written for each."""
    return dialect.name == POSTGRESQL


def claims_in_flight(dialect: Dialect) -> int:
    """How many claims a worker pool keeps outstanding at once on this
    database (worker/pool.py; its room, free slots plus claim_ahead, is
    shared among them). PostgreSQL: 2. A second claim asked while the
    first one's flush is out goes out in the next flush with the finishes
    queued by then (`worker_flushes`: beside the first), so that a pool
    that claims ahead has its next jobs running while that flush is out
    instead of waiting for it.
    SQLite: 1. Its flush is one hop to the driver's thread in this process,
    not a round trip to another: a second claim out gains no overlap there
    (bench/findings.md, "Day 6")."""
    return 2 if dialect.name == POSTGRESQL else 1


def worker_flushes(dialect: Dialect) -> int:
    """How many of the worker writes' batches (finishes, claims) may be out
    at once, each a transaction of its own (store/group_commit.py; a claim
    asked while every one is out starts the next, `SqlStore`).
    PostgreSQL: 2. Each is one statement on a connection of its own, and
    its members are fenced per row (a finish by its lease token, a claim by
    SKIP LOCKED), so two in flight cannot conflict. With one out at a time
    the server and the database took turns, neither busy (a 20,000-job
    backlog: the server at 52-58% of a core, PostgreSQL at 65-80%). Only a
    claim starts a second flush: that is when jobs are known to wait (the
    pool asks a second claim only then); once two are going, each takes the
    next batch as it comes back, until the queue is empty. `bench.ab --call
    bulk` (10,000 jobs, 4 rounds): 1.14x the jobs/s at the same server CPU
    per job, end-to-end 0.96x (within its noise); any call starting one:
    bulk 1.10x, end-to-end 0.92x; a second drain also ending whenever only
    finishes wait: bulk 0.98x and end-to-end 0.95x of this (bench/findings.md,
    day 10). SQLite: 1. It has one writer connection, which a second flush
    would only queue for."""
    return 2 if dialect.name == POSTGRESQL else 1


def refreshes_planner_statistics(dialect: Dialect) -> bool:
    """Whether the store runs ANALYZE itself as its commits change the
    operations table (store/planner_stats.py). PostgreSQL: yes, its claim
    and finish plans follow the table's statistics, which autovacuum
    refreshes only a minute apart. SQLite: no, it keeps no statistics
    unless asked and plans from its indexes."""
    return dialect.name == POSTGRESQL


# -- migrations ---------------------------------------------------------------
def migration_engine(url: URL) -> Engine:
    """The synchronous engine a migration runs on (the caller disposes of it)."""
    engine = create_engine(url)
    if url.get_backend_name() == SQLITE:
        configure_sqlite_engine(engine)
    return engine


def lock_for_migration(connection: Connection) -> None:
    """Inside the migration's transaction: one process migrates at a time
    (PostgreSQL's advisory lock; on SQLite, BEGIN IMMEDIATE already holds
    the only write lock)."""
    if connection.dialect.name == POSTGRESQL:
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")


def batch_migrations(connection: Connection) -> bool:
    """Whether Alembic must alter tables by copying them (SQLite's ALTER
    TABLE cannot change or drop most things)."""
    return connection.dialect.name == SQLITE


# -- schema choices -----------------------------------------------------------
def stores_naive_datetimes(dialect: Dialect) -> bool:
    """SQLite keeps no time zone: UTC goes in naive (schema.UTCDateTime)."""
    return dialect.name == SQLITE


def sqlite_time(moment: datetime) -> str:
    """An aware datetime as SQLite stores it (schema.UTCDateTime through
    SQLAlchemy's SQLite DATETIME): UTC, no zone, "YYYY-MM-DD HH:MM:SS.ffffff"
    (microseconds always written). For values bound at driver level without
    SQLAlchemy's processors (create_sql.py); tests/store holds it to theirs."""
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        moment = moment.astimezone(UTC)
    # The aware form ends in "+00:00": the first 26 characters are the rest.
    return moment.isoformat(" ", "microseconds")[:26]


def sqlite_time_read(text: str) -> datetime:
    """A datetime SQLite holds, read back aware (UTC): what schema.UTCDateTime
    over SQLAlchemy's SQLite DATETIME gives (its processor is fromisoformat;
    UTCDateTime then sets or converts the zone; tests/store holds the two
    equal). The text read as UTC by fromisoformat itself: a seventh of the
    CPU of datetime.replace(tzinfo=UTC), whose keyword costs the most. Text
    with a zone of its own (or a bare date, which fromisoformat then reads
    naive) takes the long way."""
    try:
        moment = datetime.fromisoformat(text + "+00:00")
    except (TypeError, ValueError):
        moment = None
    if moment is not None and moment.tzinfo is UTC:
        return moment
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def partial_index(condition: str) -> dict[str, Any]:
    """Keyword arguments for an Index over the rows matching `condition`
    only (both databases have partial indexes; SQLAlchemy names them per
    dialect)."""
    return {"sqlite_where": text(condition), "postgresql_where": text(condition)}


# A surrogate key: 64 bits on PostgreSQL; on SQLite only an INTEGER PRIMARY
# KEY is the rowid (and so autoincrements).
AUTOINCREMENT_ID: TypeEngine[int] = BigInteger().with_variant(Integer, SQLITE)
