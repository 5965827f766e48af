"""The store under test, on a freshly migrated database of each kind the
tests run on (`database_url`: SQLite, and PostgreSQL when there is one)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

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
