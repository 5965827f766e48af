"""The reads that count the active operations go through the partial
indexes of the active states, so their cost follows the QUEUED and RUNNING
rows (and the console's window of finished ones), not every row stored:
the quotas' usage read (statements.USAGE, once a second while Submits come
in) and the console's overview (presence.overview_query). Their first forms
(`state IN (...)`, with an OR for the overview) matched no index and read
the whole table on both databases: at 1,000,000 stored, the usage read took
195 ms on SQLite, the overview 211-226 ms (bench/findings.md, day 15). The
plans are the databases' own, on the real schema, with the statements'
parameters bound as the store binds them."""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy.dialects import postgresql, sqlite

from lrod.store.migrate import upgrade
from lrod.store.presence import overview_query
from lrod.store.statements import USAGE
from tests.store.conftest import plain_dsn

NOW = datetime(2026, 6, 1, tzinfo=UTC)
ACTIVE = ["ix_operations_claim", "ix_operations_lease"]
WINDOW = NOW - timedelta(hours=1)
OVERVIEW = [*ACTIVE, "ix_operations_finished"]
READS = {
    "usage": (USAGE, ACTIVE),
    "overview": (overview_query(None, WINDOW, NOW), OVERVIEW),
    "owner's overview": (overview_query("alice", WINDOW, NOW), OVERVIEW),
}
# As the store runs them: a list bound as its members (SQLAlchemy's expanding IN).
EXPANDED = {"render_postcompile": True}


def _sqlite_plan(url: str, statement: Any) -> list[str]:
    compiled = statement.compile(dialect=sqlite.dialect(), compile_kwargs=EXPANDED)
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    # The store binds datetimes as text (dialect.sqlite_time); any text will do for a plan.
    params = tuple(str(p) if isinstance(p, datetime) else p for p in params)
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        return [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {compiled}", params)]


def _postgres_plan(url: str, statement: Any) -> list[str]:
    compiled = statement.compile(dialect=postgresql.dialect(), compile_kwargs=EXPANDED)
    with psycopg.connect(plain_dsn(url), autocommit=True) as conn:
        # Told not to scan a table whole unless nothing else can serve the
        # query: on a table this small the planner would scan it anyway.
        conn.execute("SET enable_seqscan = off")
        rows = conn.execute(f"EXPLAIN {compiled}", compiled.params)  # type: ignore[call-overload]
        return [str(row[0]) for row in rows]


@pytest.mark.parametrize("read", list(READS))
def test_the_active_counts_take_the_partial_indexes(database_url: str, read: str) -> None:
    statement, indexes = READS[read]
    upgrade(database_url)
    if database_url.startswith("sqlite"):
        plan = _sqlite_plan(database_url, statement)
        reads = [step for step in plan if step.startswith(("SCAN operations", "SEARCH operations"))]
        used = sorted(s.split("USING INDEX ")[-1].split()[0] for s in reads if "USING INDEX" in s)
        assert len(used) == len(reads), plan  # no step reads the table itself
        assert used == sorted(indexes), plan
    else:
        plan = _postgres_plan(database_url, statement)
        assert not [step for step in plan if "Seq Scan" in step], plan
        assert all(any(name in step for step in plan) for name in indexes), plan
