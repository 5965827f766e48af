"""The store under test, on a freshly migrated database of each kind the
tests run on (`database_url`: SQLite, and PostgreSQL when there is one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

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
