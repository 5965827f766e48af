"""Statements run at driver level inside the store's write transaction
(SQLAlchemy's AsyncConnection from `SqlStore._write`): the worker's claim and
finishing writes (worker_sql.py) and Submit's INSERT (create_sql.py). On
SQLite such a write can also be a whole transaction in one hop to aiosqlite's
thread (`sqlite_transaction`). Errors come out as SQLAlchemy would raise
them: wrapped as its DBAPIError, and a broken connection invalidated so that
the pool replaces it.

Both reach past SQLAlchemy's and aiosqlite's public API (the adapted asyncpg
connection's transaction, aiosqlite's `_execute`): the versions are pinned in
pyproject.toml, and tests/store runs every statement on both databases.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from sqlalchemy import exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from lrod.store.dialect import SQLITE_BEGIN

_R = TypeVar("_R")


async def asyncpg_fetch(conn: AsyncConnection, sql: str, args: Sequence[Any]) -> list[Any]:
    """One statement on the transaction's asyncpg connection (prepared once
    per connection by asyncpg's statement cache)."""
    raw = await conn.get_raw_connection()
    adapted: Any = raw.dbapi_connection
    try:
        # SQLAlchemy's adapter begins its transaction with the first statement.
        if adapted._transaction is None:
            await adapted._start_transaction()
        return list(await adapted._connection.fetch(sql, *args))
    except Exception as error:
        try:
            adapted._handle_exception(error)  # raises the adapter's DBAPI error
        except Exception as translated:
            await _failed(conn, sql, args, translated, adapted.dbapi.Error, adapted)
        raise


async def _failed(
    conn: AsyncConnection,
    sql: str,
    args: Sequence[Any],
    error: BaseException,
    dbapi_error: type[Exception],
    dbapi_connection: Any,
) -> None:
    """Raise `error` as SQLAlchemy would have: wrapped as its DBAPIError, and
    the connection invalidated when it is broken (so that the pool replaces
    it, as SQLAlchemy does for the statements it runs itself)."""
    is_driver_error = isinstance(error, dbapi_error)
    if is_driver_error:
        broken = conn.dialect.is_disconnect(error, dbapi_connection, None)  # type: ignore[arg-type]
    else:  # not from the database (a socket error, a closed connection)
        broken = not isinstance(error, OverflowError)
    if broken:
        await conn.invalidate(error if isinstance(error, Exception) else None)
    if not is_driver_error:
        raise error
    assert isinstance(error, Exception)
    raise exc.DBAPIError.instance(
        sql, list(args), error, dbapi_error, connection_invalidated=broken
    ) from error


class Hop(Protocol):
    """Runs `fn` on the writer's sqlite3 connection in aiosqlite's thread:
    inside the caller's transaction (`in_sqlite_thread` bound to its
    connection) or as a transaction of its own (`sqlite_transaction` bound
    to the writer engine)."""

    async def __call__(self, sql: str, fn: Callable[[sqlite3.Connection], _R]) -> _R: ...


async def in_sqlite_thread(
    conn: AsyncConnection, sql: str, fn: Callable[[sqlite3.Connection], _R]
) -> _R:
    """`fn` on the transaction's sqlite3 connection, in aiosqlite's thread:
    one hop for all its statements."""
    raw = await conn.get_raw_connection()
    aio: Any = raw.driver_connection
    try:
        result: _R = await aio._execute(fn, aio._conn)
    except Exception as error:
        await _failed(conn, sql, (), error, sqlite3.Error, None)
        raise
    return result


def _atomically(db: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _R]) -> _R:
    """BEGIN IMMEDIATE, `fn`, COMMIT; on any error a ROLLBACK, so that a
    write that raises has written nothing (the group commit's splitting of
    a failing batch relies on it)."""
    db.execute(SQLITE_BEGIN)
    try:
        result = fn(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    return result


async def sqlite_transaction(
    engine: AsyncEngine, sql: str, fn: Callable[[sqlite3.Connection], _R]
) -> _R:
    """A whole write transaction in ONE hop to aiosqlite's thread, on the
    writer's one pooled connection (so it queues behind every other write of
    this process, as `engine.begin()` would): BEGIN IMMEDIATE, `fn`'s
    statements and COMMIT, where SQLAlchemy's begin/execute/commit take a
    hop each. Returns once COMMIT has returned, so what `fn` wrote is
    durable by then. `sql` names the write in a wrapped error.

    The connection is taken from the pool as it is (engine.raw_connection),
    without a SQLAlchemy Connection around it: a third of the CPU of
    engine.connect() and its close, paid on every one-hop write (each group
    commit of Submits, each worker batch). Returned clean, its check-in
    awaits nothing (the pool's reset only rolls back an open transaction,
    dialect.reset_open_transactions_only), so it is returned at once."""
    raw = await engine.raw_connection()
    aio: Any = raw.driver_connection
    clean = False
    try:
        result: _R = await aio._execute(_atomically, aio._conn, fn)
        clean = not aio._conn.in_transaction
    except Exception as error:
        await _failed_raw(engine, raw, sql, error)
        raise
    finally:
        if clean:
            raw.close()
        else:  # its reset may roll back on aiosqlite's thread: awaited
            await greenlet_spawn(raw.close)
    return result


async def _failed_raw(engine: AsyncEngine, raw: Any, sql: str, error: BaseException) -> None:
    """As `_failed`, for a pooled connection taken without a SQLAlchemy
    Connection (`sqlite_transaction`)."""
    is_driver_error = isinstance(error, sqlite3.Error)
    if is_driver_error:
        broken = engine.dialect.is_disconnect(error, None, None)  # type: ignore[arg-type]
    else:  # not from the database (a closed connection)
        broken = not isinstance(error, OverflowError)
    if broken:
        await greenlet_spawn(raw.invalidate, error if isinstance(error, Exception) else None)
    if not is_driver_error:
        raise error
    assert isinstance(error, Exception)
    raise exc.DBAPIError.instance(
        sql, [], error, sqlite3.Error, connection_invalidated=broken
    ) from error


def within(conn: AsyncConnection) -> Hop:
    """Hops inside `conn`'s transaction."""

    async def hop(sql: str, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        return await in_sqlite_thread(conn, sql, fn)

    return hop


def at_once(engine: AsyncEngine) -> Hop:
    """Hops that are whole transactions (BEGIN IMMEDIATE ... COMMIT) each."""

    async def hop(sql: str, fn: Callable[[sqlite3.Connection], _R]) -> _R:
        return await sqlite_transaction(engine, sql, fn)

    return hop
