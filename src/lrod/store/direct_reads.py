"""PostgreSQL reads that bypass SQLAlchemy's execution: single statements on
raw asyncpg connections of their own (and, through `run`, the worker's writes
that are one statement each), compiled once from the store's
SQLAlchemy selects and prepared once per connection (asyncpg's statement
cache), with the column types' result processors and SQLAlchemy's JSON codec
and error translation, so that rows and errors come back as the SQLAlchemy
path gives them. No greenlet, no cursor adaption, no task per read.

Cancellation (a client that hangs up mid-read) leaves nothing half-way: a
read takes no lock and writes nothing; a cancelled wait for a connection
hands on whatever it was given, and a cancelled fetch returns its connection
at once: asyncpg sends the server a cancel request, and the connection's next
query waits until that cancel is through (asyncpg's protocol does so itself).
Which database gets this reader is engine.py's choice."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Select, exc
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

from lrod.store.prepared import PreparedRead, prepare


@dataclass
class _Processed:
    """A prepared read's row shape on this database, found at its first run
    (the processors depend on the column types the server reports)."""

    row: Any
    processors: tuple[tuple[int, Callable[[Any], Any]], ...]


def _json_decoder(value: bytes) -> Any:
    # What SQLAlchemy's asyncpg dialect installs for json (binary format).
    return json.loads(value.decode())


# SQLSTATE classes after which a connection is no use: connection
# exceptions, the server shutting down.
_BROKEN_CLASSES = ("08", "57P")


def _discard_if_broken(conn: asyncpg.Connection, error: Exception) -> None:
    """A connection is pooled again after a statement PostgreSQL refused
    (its protocol is back in step); after anything else (a lost socket, a
    client-side protocol error, a shutdown) it is closed, so that the next
    caller opens a fresh one instead of meeting the same error again (as
    SQLAlchemy invalidates a connection that is broken)."""
    if isinstance(error, asyncpg.PostgresError) and not str(
        getattr(error, "sqlstate", "") or ""
    ).startswith(_BROKEN_CLASSES):
        return
    conn.terminate()


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "json", encoder=str.encode, decoder=_json_decoder, schema="pg_catalog", format="binary"
    )


class AsyncpgReader:
    """A few asyncpg connections (at most `size`), opened on first use and
    kept; each read takes one, runs one statement, and gives it back."""

    def __init__(self, dsn: str, size: int, server_settings: Mapping[str, str]) -> None:
        self._dsn = dsn
        self._size = size
        self._server_settings = dict(server_settings)
        self._dialect = sa_asyncpg.dialect()  # type: ignore[no-untyped-call]
        self._dbapi: Any = sa_asyncpg.dialect.import_dbapi()  # type: ignore[no-untyped-call]
        self._idle: list[asyncpg.Connection] = []
        self._open = 0
        self._waiters: deque[asyncio.Future[asyncpg.Connection | None]] = deque()
        self._shapes: dict[str, _Processed] = {}
        self._closed = False
        self._trace: Callable[[str], None] | None = None

    def trace(self, callback: Callable[[str], None] | None) -> None:
        """Call `callback` with each statement's SQL before it runs (None:
        stop). What the read engine's events are to the other reads."""
        self._trace = callback

    def prepare(self, statement: Select[Any]) -> PreparedRead:
        return prepare(statement, self._dialect)

    async def first(self, read: PreparedRead, params: Mapping[str, Any]) -> Any:
        """The first row of `read` (None if none), processed."""
        shape, raws = await self._run(read, params, many=False)
        return None if not raws else self._processed(shape, raws[0])

    async def all(self, read: PreparedRead, params: Mapping[str, Any]) -> list[Any]:
        """Every row of `read`, processed."""
        shape, raws = await self._run(read, params, many=True)
        return [self._processed(shape, raw) for raw in raws]

    async def first_raw(self, read: PreparedRead, params: Mapping[str, Any]) -> Any:
        """The first row of `read` as asyncpg gives it (a Record, in the
        statement's column order; None if none): for a caller that may need
        only a column or two of it. `processed` makes it a row."""
        _, raws = await self._run(read, params, many=False)
        return raws[0] if raws else None

    def processed(self, read: PreparedRead, raw: Any) -> Any:
        """A raw row of `read` (from `first_raw`), processed."""
        return self._processed(self._shapes[read.sql], raw)

    def column(self, read: PreparedRead, raw: Any, index: int) -> Any:
        """Column `index` of a raw row of `read`, processed."""
        value = raw[index]
        if value is None:
            return None
        for at, process in self._shapes[read.sql].processors:
            if at == index:
                return process(value)
        return value

    async def run(self, sql: str, args: Sequence[Any]) -> list[Any]:
        """One statement of constant SQL as a transaction of its own (the
        connection is in autocommit: a single statement is atomic, and a
        NOTIFY in it is delivered at its commit), its rows as asyncpg gives
        them: the worker's one-statement writes (worker_sql.one_statement).
        Not for a caller that may be cancelled half-way (the store runs these
        in its group commit's own task)."""
        if self._trace is not None:
            self._trace(sql)
        try:
            conn = await self._take()
        except Exception as error:
            raise self._translated(sql, args, error) from error
        try:
            return list(await conn.fetch(sql, *args))
        except Exception as error:
            _discard_if_broken(conn, error)
            raise self._translated(sql, args, error) from error
        finally:
            self._give(conn)

    @staticmethod
    def _processed(shape: _Processed, raw: Any) -> Any:
        values = list(raw.values())
        for index, process in shape.processors:
            values[index] = process(values[index])
        return shape.row._make(values)

    async def _run(
        self, read: PreparedRead, params: Mapping[str, Any], *, many: bool
    ) -> tuple[_Processed, list[Any]]:
        args = [params[name] for name in read.binds]
        if self._trace is not None:
            self._trace(read.sql)
        try:
            conn = await self._take()
        except Exception as error:
            raise self._translated(read.sql, params, error) from error
        try:
            shape = self._shapes.get(read.sql)
            if shape is None:
                shape, raws = await self._first_run(conn, read, args)
                return shape, raws if many else raws[:1]
            if many:
                return shape, await conn.fetch(read.sql, *args)
            raw = await conn.fetchrow(read.sql, *args)
            return shape, [] if raw is None else [raw]
        except Exception as error:
            _discard_if_broken(conn, error)
            raise self._translated(read.sql, params, error) from error
        finally:
            self._give(conn)

    async def _first_run(
        self, conn: asyncpg.Connection, read: PreparedRead, args: list[Any]
    ) -> tuple[_Processed, list[Any]]:
        """The statement's first run in this process: its column types as the
        server describes them give the result processors (as SQLAlchemy finds
        them from the cursor's description)."""
        try:
            statement = await conn.prepare(read.sql)
            # A prepared statement alone leaves the server's implicit
            # transaction open (asyncpg sends no Sync): run it at once.
            raws = await statement.fetch(*args)
        except BaseException:
            # Never pool a connection that may hold that transaction.
            conn.terminate()
            raise
        processors = []
        for index, (column_type, attribute) in enumerate(
            zip(read.types, statement.get_attributes(), strict=True)
        ):
            process = column_type.dialect_impl(self._dialect).result_processor(
                self._dialect, attribute.type.oid
            )
            if process is not None:
                processors.append((index, process))
        shape = _Processed(read.row, tuple(processors))
        self._shapes[read.sql] = shape
        return shape, raws

    def _translated(
        self, sql: str, params: Mapping[str, Any] | Sequence[Any], error: Exception
    ) -> Any:
        """asyncpg's errors as the SQLAlchemy path raises them (its asyncpg
        dialect's table, then DBAPIError.instance: a client-side protocol
        error too); others (OSError from a refused connection) as they
        are, as on that path."""
        table = self._dbapi._asyncpg_error_translate
        for kind in type(error).__mro__:
            if kind in table:
                dbapi_error = table[kind](error.args[0] if error.args else str(error), error)
                shown = dict(params) if isinstance(params, Mapping) else list(params)
                return exc.DBAPIError.instance(sql, shown, dbapi_error, self._dbapi.Error)
        return error

    # -- connections --------------------------------------------------------
    async def _take(self) -> asyncpg.Connection:
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.is_closed():
                    return conn
                self._open -= 1
            if self._closed:
                raise asyncpg.InterfaceError("the reader is closed")
            if self._open < self._size:
                self._open += 1
                try:
                    conn = await self._connect()
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
                return conn
            waiter: asyncio.Future[asyncpg.Connection | None] = (
                asyncio.get_running_loop().create_future()
            )
            self._waiters.append(waiter)
            try:
                given = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    # Handed a connection in the same turn as the cancel.
                    handed = waiter.result()
                    if handed is not None:
                        self._give(handed)
                    else:
                        self._wake_one()
                raise
            if given is not None:
                return given
            # None: a slot came free (a connection closed): loop and open one.

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self._dsn, server_settings=self._server_settings)
        try:
            await _init(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def _give(self, conn: asyncpg.Connection) -> None:
        if conn.is_closed() or self._closed:
            self._open -= 1
            if not conn.is_closed():
                conn.terminate()
            self._wake_one()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._open -= 1
            try:
                await conn.close(timeout=2)
            except Exception:
                conn.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
