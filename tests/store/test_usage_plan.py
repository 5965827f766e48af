"""The quotas' usage read (statements.USAGE) goes through the partial
indexes of the active states, so its cost follows the QUEUED and RUNNING
rows, not every row stored: its first form (`state IN (...)`, grouped by
owner) read the whole table on both databases, 195 ms a read on SQLite at
1,000,000 stored, once a second while Submits came in (bench/findings.md,
day 15). The plans are the databases' own, on the real schema."""

from __future__ import annotations

import contextlib
import sqlite3

import psycopg
from sqlalchemy.dialects import postgresql, sqlite

from lrod.store.migrate import upgrade
from lrod.store.statements import USAGE
from tests.store.conftest import plain_dsn

PARTIAL = {"ix_operations_claim", "ix_operations_lease"}


def _sqlite_plan(url: str) -> list[str]:
    sql = str(USAGE.compile(dialect=sqlite.dialect()))
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}")]


def _postgres_plan(url: str) -> list[str]:
    sql = str(USAGE.compile(dialect=postgresql.dialect()))
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        # Told not to scan a table whole unless nothing else can serve the
        # query: on a table this small the planner would scan it anyway.
        conn.execute("SET enable_seqscan = off")
        return [str(row[0]) for row in conn.execute(f"EXPLAIN {sql}")]


def test_the_usage_read_takes_the_active_states_partial_indexes(database_url: str) -> None:
    upgrade(database_url)
    if database_url.startswith("sqlite"):
        plan = _sqlite_plan(database_url)
        reads = [step for step in plan if step.startswith("SCAN operations")]
        assert sorted(reads) == [f"SCAN operations USING INDEX {name}" for name in sorted(PARTIAL)]
    else:
        plan = _postgres_plan(database_url)
        assert not [step for step in plan if "Seq Scan" in step], plan
        assert all(any(name in step for step in plan) for name in PARTIAL), plan
