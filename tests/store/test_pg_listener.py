"""The LISTEN side of cross-process wake-ups on PostgreSQL
(pg_notify.NotificationListener), on the real server: another process's
notification reaches the hub, this process's own is skipped, a malformed one
is a warning that stops nothing, and a connection the server ends wakes
everyone and is opened again by itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import psycopg
import pytest
from sqlalchemy.engine import make_url

from lrod.store import pg_notify
from lrod.store.pg_notify import NotificationListener
from tests.store.conftest import plain_dsn
from tests.store.test_contract import Heard

PATIENCE = 10.0


def _notify(url: str, payload: str) -> None:
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        conn.execute("SELECT pg_notify(%s, %s)", (pg_notify.CHANNEL, payload))


def _end_listeners(url: str) -> int:
    """Ends every other backend LISTENing on this database: how many."""
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND query LIKE 'LISTEN%'"
        ).fetchall()
    return len(rows)


async def _until(check: Callable[[], object]) -> None:
    async with asyncio.timeout(PATIENCE):
        while not check():
            await asyncio.sleep(0.02)


Listening = tuple[NotificationListener, Heard]


@pytest.fixture
async def listening(postgres_url: str) -> AsyncIterator[Listening]:
    heard = Heard()
    listener = NotificationListener(make_url(postgres_url), heard, "me", fallback_interval=0.1)
    listener.start()
    try:
        async with asyncio.timeout(PATIENCE):
            await listener.connected.wait()
        yield listener, heard
    finally:
        await listener.stop()


async def test_another_origin_is_heard_and_our_own_skipped(
    listening: Listening, postgres_url: str
) -> None:
    _, heard = listening
    own = pg_notify.encode("me", ["own-op"], [], True, None)
    other = pg_notify.encode("them", ["op-1", "op-2"], ["op-3"], True, None)
    await asyncio.to_thread(_notify, postgres_url, own)
    await asyncio.to_thread(_notify, postgres_url, other)
    await _until(lambda: heard.changed)
    assert heard.changed == [{"op-1", "op-2"}]
    assert heard.cancels == ["op-3"]
    assert heard.work == [None]


async def test_a_malformed_notification_is_a_warning_and_the_next_is_heard(
    listening: Listening, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    listener, heard = listening
    caplog.set_level(logging.WARNING, logger="lrod.store.notify")
    malformed = (
        "not json",
        '{"o": "them", "ops": 5}',
        '["a list"]',
        '{"o": "them", "ops": ["x"], "w": "not a time"}',
        '{"o": "them", "c": [1, 2]}',
    )
    woken = heard.everything  # once, at connecting
    for payload in malformed:
        await asyncio.to_thread(_notify, postgres_url, payload)
    well_formed = pg_notify.encode("them", ["op-9"], [], False, None)
    await asyncio.to_thread(_notify, postgres_url, well_formed)
    await _until(lambda: heard.changed)
    assert heard.changed == [{"op-9"}]  # nothing of the malformed ones
    assert heard.cancels == []
    assert heard.work == []
    assert heard.everything == woken
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(malformed)
    assert all(w.startswith("ignored a malformed notification") for w in warnings)
    assert all(r.exc_info is None for r in caplog.records)
    assert listener.connected.is_set()


async def test_a_connection_the_server_ends_wakes_everyone_and_is_opened_again(
    listening: Listening, postgres_url: str
) -> None:
    listener, heard = listening
    woken = heard.everything
    assert await asyncio.to_thread(_end_listeners, postgres_url) == 1
    await _until(lambda: heard.everything > woken)
    # Listening again by itself: a notification sent now is heard.
    async with asyncio.timeout(PATIENCE):
        while not heard.changed:
            await asyncio.to_thread(
                _notify, postgres_url, pg_notify.encode("them", ["after"], [], False, None)
            )
            await asyncio.sleep(0.1)
    assert listener.connected.is_set()
    assert heard.ids() == {"after"}
