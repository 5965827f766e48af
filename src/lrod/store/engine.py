"""Engines for a database URL. The only place that branches on the dialect
(besides the DDL the migrations emit)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_DATABASE_URL = "sqlite:///lrod.db"
# lrod's transactions are short; one idle this long belongs to a stalled process.
IDLE_IN_TRANSACTION_MS = 5000


@dataclass(frozen=True)
class Database:
    """`writer` runs transactions that write; `reader` the reads. On SQLite the
    writer is one connection that starts every transaction with BEGIN IMMEDIATE,
    so writes queue in-process instead of failing with 'database is locked'."""

    url: URL
    writer: AsyncEngine
    reader: AsyncEngine

    @property
    def dialect(self) -> str:
        return self.url.get_backend_name()

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def sync_url(url: str) -> URL:
    """The URL for synchronous tools (migrations)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite")
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported database: {parsed.get_backend_name()}")


def async_url(url: str) -> URL:
    """The URL the service runs on. PostgreSQL goes through asyncpg: measured
    1.2-1.4x psycopg's rate for Submit and round trips (docs/architecture.md);
    psycopg serves migrations and the LISTEN connection."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+asyncpg")
    raise ValueError(f"unsupported database: {parsed.get_backend_name()}")


def open_database(url: str, *, pool_size: int = 10) -> Database:
    target = async_url(url)
    if target.get_backend_name() == "sqlite":
        return _sqlite(target)
    engine = create_async_engine(
        target,
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping (a round trip per checkout): a connection broken by a
        # restart fails once, is translated to UNAVAILABLE, and SQLAlchemy
        # then discards the whole pool's idle connections.
        connect_args={
            "server_settings": {
                # A process frozen inside a transaction (SIGSTOP, a VM pause) would
                # hold its row locks, and SKIP LOCKED would skip its job forever:
                # the server ends such a session instead, so rescue can proceed.
                "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_MS),
            }
        },
    )
    # Reads are single statements: autocommit spares them BEGIN and ROLLBACK.
    return Database(target, engine, engine.execution_options(isolation_level="AUTOCOMMIT"))


def _sqlite(target: URL) -> Database:
    writer = create_async_engine(target, pool_size=1, max_overflow=0)
    # Readers run each SELECT on its own (autocommit, no BEGIN/ROLLBACK): in
    # WAL mode a single statement reads one consistent snapshot, and every
    # statement saved is a thread hop saved.
    reader = create_async_engine(target, pool_size=4, max_overflow=4, pool_reset_on_return=None)
    _configure_sqlite(writer, begin="BEGIN IMMEDIATE")
    _configure_sqlite(reader, begin=None)
    return Database(target, writer, reader)


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
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _configure_sqlite(engine: AsyncEngine, *, begin: str | None) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        configure_sqlite_connection(dbapi_connection)

    if begin is None:
        return

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(begin)
