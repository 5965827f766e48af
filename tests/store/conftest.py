"""The store under test, on a freshly migrated database of each kind the
tests run on (`database_url`: SQLite, and PostgreSQL when there is one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store import pg_notify
from lrod.store.engine import Database, open_database
from lrod.store.migrate import upgrade
from lrod.store.sql_store import SqlStore


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    upgrade(database_url)
    opened = SqlStore(open_database(database_url))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def opened(database_url: str) -> AsyncIterator[tuple[Database, SqlStore]]:
    """The store and its Database, for tests that read under it."""
    upgrade(database_url)
    database = open_database(database_url)
    store = SqlStore(database)
    try:
        yield database, store
    finally:
        await store.close()
        await database.dispose()


def new_row(job: NewJob, fingerprint: str) -> dict[str, Any]:
    """`job` as the mapping SQLAlchemy's INSERT of OperationRow takes: the
    reference the hand-written creates are held to."""
    return {
        "id": job.id,
        "owner": job.owner,
        "job_type": job.job_type,
        "state": State.QUEUED.value,
        "priority": job.priority,
        "input_type": job.input.type_url,
        "input_value": job.input.value,
        "labels": dict(job.labels),
        "request_id": job.request_id,
        "request_fingerprint": fingerprint if job.request_id else None,
        "dedupe_key": job.dedupe_key,
        "attempt": 0,
        "max_attempts": job.max_attempts,
        "timeout_seconds": job.timeout.total_seconds() if job.timeout is not None else None,
        "create_time": job.create_time,
        "update_time": job.create_time,
        "run_after": job.run_after,
        "cancel_requested": False,
        "progress_completed": 0,
        "progress_total": 0,
        "progress_stage": "",
        "version": 1,
        "notify_url": job.notify_url,
    }


def plain_dsn(url: str) -> str:
    """A PostgreSQL URL as libpq (psycopg, asyncpg) takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
async def pg_store(postgres_url: str) -> AsyncIterator[SqlStore]:
    """The store on a freshly migrated PostgreSQL database alone."""
    upgrade(postgres_url)
    opened = SqlStore(open_database(postgres_url))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def heard(postgres_url: str) -> AsyncIterator[list[dict[str, Any]]]:
    """The payloads on the store's channel, decoded, as another process's
    listener receives them."""
    payloads: list[dict[str, Any]] = []
    conn = await psycopg.AsyncConnection.connect(plain_dsn(postgres_url), autocommit=True)
    await conn.execute(f"LISTEN {pg_notify.CHANNEL}")

    async def listen() -> None:
        async for notify in conn.notifies():
            payloads.append(json.loads(notify.payload))

    task = asyncio.create_task(listen())
    try:
        yield payloads
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await conn.close()
