"""The claim and list queries use the indexes designed for them, on a
PostgreSQL table of realistic size (checked with EXPLAIN, not timing)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine

from lrod.domain.filters import parse_filter
from lrod.store.engine import sync_url
from lrod.store.statements import due_query, list_query

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


def _plan(connection, statement) -> str:
    compiled = statement.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    rows = connection.exec_driver_sql("EXPLAIN " + compiled.string, compiled.params).all()
    return "\n".join(r[0] for r in rows)


def test_claim_and_list_use_their_indexes(postgres_url) -> None:
    engine = create_engine(sync_url(postgres_url))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(FILL)
            connection.exec_driver_sql("ANALYZE operations")
        now = datetime.now(UTC)
        with engine.connect() as connection:
            claim = _plan(connection, due_query(now, 16, ["examples.sleep", "examples.flaky"]))
            listing = _plan(connection, list_query("owner-7", parse_filter(""), None, 51, now))
            filtered = _plan(
                connection,
                list_query("owner-7", parse_filter("metadata.state = QUEUED"), None, 51, now),
            )
    finally:
        engine.dispose()
    assert "ix_operations_claim" in claim, claim
    assert "Sort" not in claim, claim
    assert "Seq Scan" not in claim, claim
    assert "ix_operations_list" in listing, listing
    assert "Seq Scan" not in listing, listing
    assert "Seq Scan" not in filtered, filtered
