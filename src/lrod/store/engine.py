"""Engines for a database URL, built from the choices of lrod.store.dialect
(the one module that tells SQLite from PostgreSQL; its URL helpers are
re-exported here)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, create_engine, exc
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from lrod.store import dialect as _dialect
from lrod.store.dialect import (
    SQLITE_BEGIN,
    async_url,
    configure_sqlite_connection,
    configure_sqlite_engine,
    reset_open_transactions_only,
    sqlite_path,
    sync_url,
    url_problem,
)
from lrod.store.direct_reads import AsyncpgReader
from lrod.store.pg_notify import NotificationListener
from lrod.store.prepared import PreparedRead, prepare
from lrod.store.protocol import ChangeFeed, ChangeListener
from lrod.store.sqlite_watch import SqliteChangeWatcher

__all__ = [
    "AsyncpgReader",
    "Database",
    "InlineReader",
    "PreparedRead",
    "async_url",
    "configure_sqlite_connection",
    "open_database",
    "sqlite_path",
    "sync_url",
    "url_problem",
]

_T = TypeVar("_T")

# lrod's transactions are short; one idle this long belongs to a stalled process.
IDLE_IN_TRANSACTION_MS = 5000
# SQLite reader threads (and connections): more only contend for the GIL.
READ_THREADS = 4


@dataclass(frozen=True)
class Database:
    """`writer` runs transactions that write; `read` runs reads. On SQLite the
    writer is one connection that starts every transaction with BEGIN IMMEDIATE,
    so writes queue in-process instead of failing with 'database is locked';
    reads run whole in a reader thread on plain sqlite3 connections, one hop
    per read (aiosqlite would hop once per DBAPI call). On PostgreSQL reads run
    on the async engine in autocommit."""

    url: URL
    writer: AsyncEngine
    reader: AsyncEngine | None = None
    sync_reader: Engine | None = None
    read_threads: ThreadPoolExecutor | None = field(default=None, compare=False)
    # SQLite: reads that cannot block, on the loop's thread.
    inline: InlineReader | None = field(default=None, compare=False)
    # PostgreSQL: single-statement reads on raw asyncpg (direct_reads.py).
    direct: AsyncpgReader | None = field(default=None, compare=False)

    @property
    def dialect(self) -> str:
        return _dialect.backend(self.url)

    @property
    def notifies(self) -> bool:
        """Whether writes tell other processes with NOTIFY (PostgreSQL)."""
        return _dialect.notifies(self.url)

    def change_feed(self, listener: ChangeListener, origin: str) -> ChangeFeed:
        """What tells this process of other processes' writes: LISTEN on
        PostgreSQL (skipping this process's own `origin`), the data_version
        watch on SQLite."""
        if self.notifies:
            return NotificationListener(self.url, listener, origin)
        return SqliteChangeWatcher(self.writer, listener)

    @property
    def read_engine(self) -> Engine:
        """The synchronous Engine that reads go through (for its events)."""
        if self.sync_reader is not None:
            return self.sync_reader
        assert self.reader is not None
        return self.reader.sync_engine

    async def read(self, fn: Callable[[Connection], _T]) -> _T:
        if self.sync_reader is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.read_threads, _read_with, self.sync_reader, fn)
        assert self.reader is not None
        async with self.reader.connect() as conn:
            return await conn.run_sync(fn)

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not None:
            await self.reader.dispose()
        if self.sync_reader is not None:
            self.sync_reader.dispose()
        if self.read_threads is not None:
            self.read_threads.shutdown(wait=False)
        if self.inline is not None:
            self.inline.close()
        if self.direct is not None:
            await self.direct.close()


def _read_with(engine: Engine, fn: Callable[[Connection], _T]) -> _T:
    with engine.connect() as conn:
        return fn(conn)


def open_database(url: str, *, pool_size: int = 10) -> Database:
    target = async_url(url)
    if _dialect.is_sqlite(target):
        return _sqlite(target)
    server_settings = {
        # A process frozen inside a transaction (SIGSTOP, a VM pause) would
        # hold its row locks, and SKIP LOCKED would skip its job forever:
        # the server ends such a session instead, so rescue can proceed.
        "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
    }
    engine = create_async_engine(
        target,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping (a round trip per checkout): a connection broken by a
        # restart fails once, is translated to UNAVAILABLE, and SQLAlchemy
        # then discards the whole pool's idle connections.
        connect_args={"server_settings": server_settings},
    )
    # Reads are single statements: autocommit spares them BEGIN and ROLLBACK.
    # The hottest ones (GetOperation) skip SQLAlchemy's execution altogether.
    direct = AsyncpgReader(_dialect.libpq_dsn(target), pool_size, server_settings)
    return Database(
        target, engine, engine.execution_options(isolation_level="AUTOCOMMIT"), direct=direct
    )


def _sqlite(target: URL) -> Database:
    # No rollback at every check-in: only of a transaction left open
    # (reset_open_transactions_only below).
    writer = create_async_engine(target, pool_size=1, max_overflow=0, pool_reset_on_return=None)
    # Readers run each SELECT on its own (no BEGIN): in WAL mode a single
    # statement reads one consistent snapshot.
    sync_reader = create_engine(
        target.set(drivername="sqlite"),
        pool_size=READ_THREADS,
        max_overflow=0,
        connect_args={"check_same_thread": False},
    )

    configure_sqlite_engine(sync_reader, begin=None)
    configure_sqlite_engine(writer.sync_engine, begin=SQLITE_BEGIN)
    reset_open_transactions_only(writer.sync_engine)
    threads = ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="lrod-read")
    path = target.database or ""
    inline = InlineReader(path) if path and path != ":memory:" else None
    return Database(target, writer, sync_reader=sync_reader, read_threads=threads, inline=inline)


class InlineReader:
    """SQLite only: reads that cannot block (one row by primary key, in WAL
    mode, where a reader never waits for the writer) run on the event loop's
    thread on a plain sqlite3 connection of their own: no hop to a reader
    thread, no pool checkout, no SQLAlchemy execution per read. Statements
    are compiled once (`prepare`), with the column types' result processors,
    so that rows come back as the SQLAlchemy path gives them."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._dialect = sqlite.dialect()
        self._trace: Callable[[str], None] | None = None

    def prepare(self, statement: Select[Any]) -> PreparedRead:
        read = prepare(statement, self._dialect)
        return replace(
            read,
            processors=tuple(
                t.dialect_impl(self._dialect).result_processor(self._dialect, None)
                for t in read.types
            ),
        )

    def first(self, read: PreparedRead, params: Mapping[str, Any]) -> Any:
        """The first row of `read` (None if none), processed."""
        raw = self.first_raw(read, params)
        return None if raw is None else self.processed(read, raw)

    def first_raw(self, read: PreparedRead, params: Mapping[str, Any]) -> Any:
        """The first row of `read` as the driver gives it (a tuple, in the
        statement's column order; None if none): for a caller that may need
        only a column or two of it. `processed` makes it a row."""
        try:
            if self._conn is None:
                self._conn = self._connect()
            return self._conn.execute(read.sql, [params[name] for name in read.binds]).fetchone()
        except sqlite3.Error as error:
            self.close()
            raise exc.DBAPIError.instance(read.sql, params, error, sqlite3.Error) from error

    @staticmethod
    def processed(read: PreparedRead, raw: Any) -> Any:
        return read.row._make(
            value if process is None else process(value)
            for value, process in zip(raw, read.processors, strict=True)
        )

    @staticmethod
    def column(read: PreparedRead, raw: Any, index: int) -> Any:
        """Column `index` of a raw row, processed."""
        process = read.processors[index]
        value = raw[index]
        return value if process is None or value is None else process(value)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, check_same_thread=False)
        configure_sqlite_connection(conn)
        conn.set_trace_callback(self._trace)
        return conn

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback` with each statement's SQL (sqlite3's own trace;
        None: stop). What the read engine's events are to the other reads."""
        self._trace = callback
        if self._conn is not None:
            self._conn.set_trace_callback(callback)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
