"""PostgreSQL's creates send a column that every row of the statement shares
once, as a scalar, and the others as arrays (create_sql.SHARED, `_rows`):
the rows stored must be the very rows of sending every value per row. The
same jobs are stored, under the same ids, by each way a create reaches the
database (a BatchSubmit's one statement, the transaction's INSERT, one
create at a time, where every column is shared, and SQLAlchemy's own
INSERT, where none is), the tables read back as text and cleared between
ways; every way must leave the same text in every column, NULLs included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta, timezone
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.create_sql import _ROW, SHARED, _Postgres
from lrod.store.schema import LabelRow, OperationRow
from lrod.store.sql_store import SqlStore
from tests.store.conftest import new_row, plain_dsn
from tests.store.test_contract import NOW, Grant, new_job

Items = list[tuple[NewJob, str]]
EAST = timezone(timedelta(hours=2))


async def _taken(url: str, ids: Sequence[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows of `ids` as PostgreSQL prints them (row_to_json: every
    column as its text, the labels' JSON as stored), and their labels'
    rows; then deleted, for the next way to store them again."""
    async with await psycopg.AsyncConnection.connect(plain_dsn(url), autocommit=True) as conn:
        ids = list(ids)
        rows = await (
            await conn.execute(
                "SELECT row_to_json(o)::text FROM operations o WHERE id = ANY(%s) ORDER BY id",
                [ids],
            )
        ).fetchall()
        labels = await (
            await conn.execute(
                "SELECT operation_id, key, value FROM operation_labels"
                " WHERE operation_id = ANY(%s) ORDER BY operation_id, key",
                [ids],
            )
        ).fetchall()
        await conn.execute("DELETE FROM operations WHERE id = ANY(%s)", [ids])
    assert len(rows) == len(ids)
    return [row[0] for row in rows], labels


async def _sqlalchemy_insert(store: SqlStore, items: Items) -> None:
    """The rows as SQLAlchemy's own INSERT writes them (every value bound
    per row by the column types' processors)."""
    async with store._db.writer.begin() as conn:
        for job, fingerprint in items:
            await conn.execute(insert(OperationRow), new_row(job, fingerprint))
            for key, value in job.labels.items():
                await conn.execute(
                    insert(LabelRow), {"operation_id": job.id, "key": key, "value": value}
                )


async def _every_way(store: SqlStore, url: str, items: Items) -> None:
    """Store `items` each way and hold every way's rows to SQLAlchemy's."""
    ids = [job.id for job, _ in items]
    await _sqlalchemy_insert(store, items)
    expected = await _taken(url, ids)
    # BatchSubmit's: ONE statement (PG_INSERT_FRESH with request_ids or
    # dedupe keys, else PG_INSERT_NOTIFY).
    stored = await store.create_all(items)
    assert all(created for _, created in stored)
    assert await _taken(url, ids) == expected
    # The transaction's INSERT (PG_INSERT and PG_LABELS), as create_many runs it.
    async with store._db.writer.begin() as conn:
        await store._create_sql.insert(conn, items)
    assert await _taken(url, ids) == expected
    # One at a time (Submit): every column shared.
    for job, fingerprint in items:
        _, created = await store.create(job, fingerprint)
        assert created
    assert await _taken(url, ids) == expected


def _varying(items: Items) -> set[str]:
    """The columns `_columns` sends as arrays for `items`."""
    arrays, scalars = _Postgres(asyncpg_dialect())._columns(items)
    assert len(scalars) == len(SHARED)
    return {name for (name, _), array in zip(_ROW, arrays, strict=True) if array}


def _mixed() -> Items:
    """A batch unlike in many columns and alike in the others."""
    hook = "https://example.com/hook"
    jobs = [
        new_job(),
        new_job(priority=-17, labels={"team": "data", "tier": "gold"}, request_id="r-1"),
        new_job(labels={"tier": "gold", "team": "data"}, notify_url=hook),  # the same, reordered
        new_job(timeout=timedelta(seconds=3, microseconds=123457), dedupe_key="d-1"),
        new_job(input=Payload("type.googleapis.com/x", b""), run_after=NOW + timedelta(hours=1)),
        new_job(create_time=NOW.astimezone(EAST), labels={"a": ""}, request_id="r-2"),
        new_job(priority=5, notify_url=hook, timeout=timedelta(seconds=3, microseconds=123457)),
    ]
    return [(job, job.fingerprint() if job.request_id else "") for job in jobs]


async def test_a_mixed_batch_stores_the_rows_of_every_value_per_row(
    pg_store: SqlStore, postgres_url: str
) -> None:
    items = _mixed()
    assert _varying(items) == {
        "id", "priority", "input_value", "labels", "request_id", "request_fingerprint",
        "dedupe_key", "timeout_seconds", "run_after", "notify_url",
    }  # fmt: skip
    await _every_way(pg_store, postgres_url, items)
    # Without request_ids or dedupe keys (BatchSubmit's PG_INSERT_NOTIFY).
    plain = [(replace(job, request_id=None, dedupe_key=None), "") for job, _ in items]
    await _every_way(pg_store, postgres_url, plain)
    # A batch alike in everything but the ids: only the ids vary.
    alike = [(replace(items[1][0], id=new_operation_id(), request_id=None), "") for _ in range(5)]
    assert _varying(alike) == {"id"}
    await _every_way(pg_store, postgres_url, alike)
    # The same with request_ids (PG_INSERT_FRESH), their labels shared too.
    keyed = [(replace(job, request_id=f"a-{n}"), "fp") for n, (job, _) in enumerate(alike)]
    assert _varying(keyed) == {"id", "request_id"}
    await _every_way(pg_store, postgres_url, keyed)


async def test_claimed_creates_store_the_rows_of_every_value_per_row(
    pg_store: SqlStore, postgres_url: str
) -> None:
    """The hand-off's INSERT (PG_INSERT_CLAIMED): a batch of them as one at
    a time, with their attempts rows."""
    grants = [Grant(now=NOW + timedelta(seconds=n)) for n in range(7)]
    items = [(job, fp, grant) for (job, fp), grant in zip(_mixed(), grants, strict=True)]
    ids = [job.id for job, _, _ in items]
    attempts = (
        "SELECT operation_id, number, worker_id, lease_token, start_time::text, outcome"
        " FROM attempts WHERE operation_id = ANY(%s) ORDER BY operation_id"
    )

    async def taken() -> tuple[Any, ...]:
        async with await psycopg.AsyncConnection.connect(plain_dsn(postgres_url)) as conn:
            opened = await (await conn.execute(attempts, [ids])).fetchall()
        assert len(opened) == len(ids)  # all claimed: nothing queued ahead
        return (opened, *(await _taken(postgres_url, ids)))

    async with pg_store._db.writer.begin() as conn:
        assert await pg_store._create_sql.insert_claimed(conn, items) == [True] * len(items)
    batch = await taken()
    for item in items:
        async with pg_store._db.writer.begin() as conn:
            assert await pg_store._create_sql.insert_claimed(conn, [item]) == [True]
    assert await taken() == batch


HOOK = "https://example.com/h"
SECONDS = timedelta(seconds=1.5)

# Per SHARED column: (the fields of all rows but one, the odd row's), the
# odd row's value differing from the others' in that column alone (or in
# it and the columns it makes: a request_id, its fingerprint). Both ways
# round where NULL is one of the values.
ODD_ONE: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = {
    "owner": [({}, {"owner": "bob"})],
    "job_type": [({}, {"job_type": "u"})],
    "priority": [({"priority": 3}, {"priority": -3})],
    "input_type": [({}, {"input": Payload("type.googleapis.com/y", b"in")})],
    "input_value": [({}, {"input": Payload("type.googleapis.com/x", b"")})],
    "labels": [
        ({"labels": {"a": "1", "b": "2"}}, {"labels": {"b": "2", "a": "1"}}),  # equal, reordered
        ({}, {"labels": {"a": "1"}}),
        ({"labels": {"a": "1"}}, {"labels": {}}),
        ({"labels": {"a": "1"}}, {"labels": {"a": "2"}}),
    ],
    "request_id": [({}, {"request_id": "r-odd"})],
    "request_fingerprint": [({"fingerprint": "f"}, {"fingerprint": "g"})],
    "dedupe_key": [({}, {"dedupe_key": "k"})],
    "max_attempts": [({}, {"max_attempts": 7})],
    "timeout_seconds": [
        ({}, {"timeout": SECONDS}),
        ({"timeout": SECONDS}, {"timeout": None}),
        ({"timeout": SECONDS}, {"timeout": timedelta(seconds=2.25)}),
    ],
    "create_time": [
        ({}, {"create_time": NOW + timedelta(microseconds=1)}),
        ({}, {"create_time": NOW.astimezone(EAST)}),  # the same instant
    ],
    "run_after": [({}, {"run_after": NOW + timedelta(hours=1)})],
    "notify_url": [({}, {"notify_url": HOOK}), ({"notify_url": HOOK}, {"notify_url": None})],
}
CASES = [
    pytest.param(column, alike, odd, id=f"{column}-{n}")
    for column, cases in ODD_ONE.items()
    for n, (alike, odd) in enumerate(cases)
]


def test_every_shared_column_has_its_odd_one_out() -> None:
    assert set(ODD_ONE) == SHARED


@pytest.mark.parametrize(("column", "alike", "odd"), CASES)
async def test_a_batch_with_one_row_odd_in_one_column(
    pg_store: SqlStore,
    postgres_url: str,
    column: str,
    alike: dict[str, Any],
    odd: dict[str, Any],
) -> None:
    items: Items = []
    for n, fields in enumerate([alike, odd, alike]):
        fields = dict(fields)
        fingerprint = fields.pop("fingerprint", None)
        if fingerprint is not None:  # a fingerprint is stored with a request_id
            fields["request_id"] = f"r-{n}"
        job = new_job(**fields)
        items.append((job, fingerprint or (job.fingerprint() if job.request_id else "")))
    varying = _varying(items)
    if column == "create_time" and odd["create_time"] == NOW:  # the same instant
        assert varying == {"id"}
    else:
        assert {"id", column} <= varying <= {"id", column, "request_id", "request_fingerprint"}
    await _every_way(pg_store, postgres_url, items)
