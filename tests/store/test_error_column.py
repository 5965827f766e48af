"""An operation or attempt without an error stores SQL NULL in its error
columns, not the JSON text 'null' (which `error IS NULL` does not match);
rows a store wrote before, holding 'null', read back as having no error."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import text

from lrod.domain.operation import Payload
from lrod.store.engine import Database
from lrod.store.sql_store import SqlStore
from tests.store.test_contract import AT_ONCE, KEEP, LEASE, NOW, add, claim_one

_JSON_NULLS = {
    "operations": ("error", "last_attempt_error"),
    "attempts": ("error",),
}


async def _count(database: Database, sql: str) -> int:
    async with database.writer.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def _json_nulls(database: Database) -> dict[str, int]:
    return {
        f"{table}.{column}": await _count(
            database, f"SELECT count(*) FROM {table} WHERE CAST({column} AS TEXT) = 'null'"
        )
        for table, columns in _JSON_NULLS.items()
        for column in columns
    }


async def test_no_error_is_stored_as_sql_null(opened: tuple[Database, SqlStore]) -> None:
    database, store = opened
    done = await add(store)
    released = await add(store)
    await add(store)  # stays queued
    succeeded = await claim_one(store)
    assert succeeded.operation.id == done.id
    assert await store.succeed(succeeded, NOW, Payload("type.googleapis.com/x", b"out"), KEEP)
    handed_back = await claim_one(store)
    assert handed_back.operation.id == released.id
    assert await store.release(handed_back, NOW)
    # A lease that ran out: the rescue queues it again.
    await claim_one(store)
    assert await store.rescue(NOW + LEASE + timedelta(seconds=1), 10, lambda _: AT_ONCE) == 1
    assert await _json_nulls(database) == dict.fromkeys(
        ("operations.error", "operations.last_attempt_error", "attempts.error"), 0
    )
    assert await _count(database, "SELECT count(*) FROM attempts WHERE error IS NULL") == 2


async def test_a_json_null_written_before_reads_as_no_error(
    opened: tuple[Database, SqlStore],
) -> None:
    database, store = opened
    op = await add(store)
    claim = await claim_one(store)
    assert await store.succeed(claim, NOW, Payload("type.googleapis.com/x", b"out"), KEEP)
    null = "CAST('null' AS JSON)" if database.dialect == "postgresql" else "'null'"
    async with database.writer.begin() as conn:
        await conn.execute(
            text(f"UPDATE operations SET error = {null}, last_attempt_error = {null}")
        )
        await conn.execute(text(f"UPDATE attempts SET error = {null}"))
    assert sum((await _json_nulls(database)).values()) == 3
    read = await store.get(op.id, "alice", NOW)
    assert (read.error, read.last_attempt_error) == (None, None)
    assert read.result is not None
    [attempt] = await store.attempts(op.id)
    assert attempt.error is None
