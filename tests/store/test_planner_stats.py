"""PostgreSQL's planner statistics of the operations table, refreshed by the
store as its commits change it (store/planner_stats.py): after a BatchSubmit
past the threshold the table has been analyzed (pg_class.reltuples counts
its rows; a table never analyzed says -1), and a refresh that fails is a
warning, not an error of the write that set it off. On the real server."""

from __future__ import annotations

import asyncio
import logging

import psycopg
import pytest

from lrod.store.engine import open_database
from lrod.store.planner_stats import ANALYZE_BASE, ANALYZE_LOCK, PlannerStatistics
from lrod.store.sql_store import SqlStore
from tests.store.conftest import plain_dsn
from tests.store.test_contract import new_job


def _reltuples(url: str) -> float:
    with psycopg.connect(plain_dsn(url)) as conn:
        row = conn.execute(
            "SELECT reltuples FROM pg_class WHERE oid = 'operations'::regclass"
        ).fetchone()
    assert row is not None
    return float(row[0])


async def _analyzed(url: str, at_least: float, within: float = 20.0) -> float:
    rows = -1.0
    for _ in range(int(within / 0.05)):
        rows = await asyncio.to_thread(_reltuples, url)
        if rows >= at_least:
            break
        await asyncio.sleep(0.05)
    return rows


async def test_a_batch_past_the_threshold_refreshes_the_statistics(
    pg_store: SqlStore, postgres_url: str
) -> None:
    assert _reltuples(postgres_url) < 0  # a fresh table: never analyzed
    small = [new_job() for _ in range(10)]
    await pg_store.create_all([(job, job.fingerprint()) for job in small])
    jobs = [new_job() for _ in range(ANALYZE_BASE + 200)]
    await pg_store.create_all([(job, job.fingerprint()) for job in jobs])
    # Each commit's changed rows counted: the second batch took the count
    # past the threshold, and ANALYZE saw both batches' rows.
    assert await _analyzed(postgres_url, len(jobs) + len(small)) == len(jobs) + len(small)


async def test_below_the_threshold_the_store_does_not_analyze(
    pg_store: SqlStore, postgres_url: str
) -> None:
    jobs = [new_job() for _ in range(ANALYZE_BASE - 1)]
    await pg_store.create_all([(job, job.fingerprint()) for job in jobs])
    await pg_store.close()  # a refresh under way would have been waited for or cancelled
    assert _reltuples(postgres_url) < 0


async def test_a_failed_refresh_is_a_warning_and_is_tried_again(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A database that is not there: the refresh's connection fails.
    database = open_database(postgres_url.rsplit("/", 1)[0] + "/lrod_not_there")
    stats = PlannerStatistics(database.writer)
    try:
        with caplog.at_level(logging.WARNING, logger="lrod.store"):
            stats.changed(ANALYZE_BASE)
            for _ in range(200):
                if stats._task is None:
                    break
                await asyncio.sleep(0.05)
        assert stats.refreshes == 0
        [record] = [r for r in caplog.records if "planner's statistics" in r.getMessage()]
        assert record.exc_info is None
        assert "lrod_not_there" not in record.getMessage()  # the error's class, no text
        # Counting starts again: the next threshold's worth tries again.
        stats._next = 0.0
        stats.changed(ANALYZE_BASE - 1)
        assert stats._task is None
        stats.changed(1)
        assert stats._task is not None
    finally:
        await stats.close()
        await database.dispose()


async def test_a_refresh_under_way_elsewhere_is_left_to_it(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Another process's refresh holds the advisory lock for its transaction:
    # this one leaves it to that one (two ANALYZEs of one table at once fail
    # with "tuple concurrently updated"), without a warning; once it is
    # released, the next threshold's worth refreshes them here.
    database = open_database(postgres_url)
    stats = PlannerStatistics(database.writer)
    other = psycopg.connect(plain_dsn(postgres_url))
    try:
        other.execute(f"SELECT pg_advisory_xact_lock({ANALYZE_LOCK})")
        with caplog.at_level(logging.WARNING, logger="lrod.store"):
            stats.changed(ANALYZE_BASE)
            await _settled(stats)
        assert (stats.refreshes, stats.left_to_others) == (0, 1)
        assert not [r for r in caplog.records if "planner's statistics" in r.getMessage()]
        other.rollback()  # the other refresh ended
        stats._next = 0.0
        stats.changed(ANALYZE_BASE)
        await _settled(stats)
        assert (stats.refreshes, stats.left_to_others) == (1, 1)
        assert _reltuples(postgres_url) >= 0  # analyzed
    finally:
        other.close()
        await stats.close()
        await database.dispose()


async def _settled(stats: PlannerStatistics) -> None:
    assert stats._task is not None
    for _ in range(200):
        if stats._task is None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the refresh did not end within 10 s")
