"""The claim and list queries use the indexes designed for them, on a
PostgreSQL table of realistic size (checked with EXPLAIN, not timing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from lrod.domain.filters import parse_filter
from lrod.store.create_sql import PG_INSERT_FRESH
from lrod.store.engine import sync_url
from lrod.store.statements import due_query, list_query
from lrod.store.worker_sql import (
    PG_CLAIM,
    PG_CLAIM_NOTIFY,
    PG_FINISH,
    PG_FINISH_CLAIM_NOTIFY,
    PG_FINISH_NOTIFY,
)

pytestmark = pytest.mark.slow

ROWS = 60_000

FILL = f"""
INSERT INTO operations (id, owner, job_type, state, priority, input_type, input_value, labels,
    attempt, max_attempts, create_time, update_time, run_after, cancel_requested,
    progress_completed, progress_total, progress_stage, version, expire_time)
SELECT lpad(to_hex(n), 22, '0'), 'owner-' || (n %% 50), 'examples.sleep',
    CASE WHEN n %% 10 = 0 THEN 'QUEUED' ELSE 'SUCCEEDED' END, n %% 3,
    'type.googleapis.com/lrod.examples.v1.SleepJob', '\\x'::bytea, '{{}}',
    1, 3, now() - n * interval '1 second', now(), now() - n * interval '1 second', false,
    0, 0, '', 1,
    CASE WHEN n %% 10 = 0 THEN NULL ELSE now() + interval '7 days' END
FROM generate_series(1, {ROWS}) AS n
"""

ATTEMPTS = """
INSERT INTO attempts (operation_id, number, worker_id, lease_token, start_time, outcome)
SELECT id, 1, 'w', 't', now(), 'SUCCEEDED' FROM operations
"""


def _plan(connection, statement) -> str:
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    rows = connection.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params).all()
    return "\n".join(r[0] for r in rows)


def _worker_plans(connection) -> list[str]:
    """The worker's driver-level claim and finish (worker_sql.py), planned
    as asyncpg runs them: prepared, with a generic plan."""
    connection.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    plans = []
    claim = "now(), ARRAY['examples.sleep'], 16, 'w', 't', now()"
    finish = ", ".join(["NULL"] * 23)
    for name, sql, args in (
        ("claim", PG_CLAIM, claim),
        ("finish", PG_FINISH, finish),
        # The same as statements of their own, with their NOTIFY folded in.
        ("claim_one", PG_CLAIM_NOTIFY, f"{claim}, 'origin'"),
        ("finish_one", PG_FINISH_NOTIFY, f"{finish}, 'origin'"),
        ("both_one", PG_FINISH_CLAIM_NOTIFY, f"{finish}, {claim}, 'origin'"),
        # A create with request_ids or dedupe keys (create_sql.py).
        ("fresh", PG_INSERT_FRESH, ", ".join(["NULL"] * 18 + ["'payload'"] + ["NULL"] * 14)),
    ):
        connection.exec_driver_sql(f"PREPARE {name} AS {sql}")
        rows = connection.exec_driver_sql(f"EXPLAIN EXECUTE {name}({args})").all()
        plans.append("\n".join(r[0] for r in rows))
    return plans


def test_claim_and_list_use_their_indexes(postgres_url) -> None:
    engine = create_engine(sync_url(postgres_url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(FILL)
            connection.exec_driver_sql(ATTEMPTS)
            connection.exec_driver_sql("ANALYZE operations")
            connection.exec_driver_sql("ANALYZE attempts")
        now = datetime.now(UTC)
        with engine.connect() as connection:
            claim = _plan(connection, due_query(now, 16, ["examples.sleep", "examples.flaky"]))
            listing = _plan(connection, list_query("owner-7", parse_filter(""), None, 51, now))
            filtered = _plan(
                connection,
                list_query("owner-7", parse_filter("metadata.state = QUEUED"), None, 51, now),
            )
            worker = _worker_plans(connection)
    finally:
        engine.dispose()
    assert "ix_operations_claim" in claim, claim
    for plan in worker:
        assert "Seq Scan" not in plan, plan
    for claiming in (worker[0], worker[2], worker[4]):
        assert "ix_operations_claim" in claiming, claiming
        assert "Sort" not in claiming, claiming
    for finishing in (worker[1], worker[3], worker[4]):
        assert "ix_attempts_operation" in finishing, finishing
    # The look-up of stored request_ids and active dedupe keys, by their indexes.
    assert "uq_operations_request_id" in worker[5], worker[5]
    assert "uq_operations_active_dedupe" in worker[5], worker[5]
    assert "Sort" not in claim, claim
    assert "Seq Scan" not in claim, claim
    assert "ix_operations_list" in listing, listing
    assert "Seq Scan" not in listing, listing
    assert "Seq Scan" not in filtered, filtered
