"""Operations written straight into the database with SQL, in the shape the
store writes them (compare SqlStore.create, claim and succeed): fast enough
to put a million rows in place before measuring.

Finished rows are SUCCEEDED no-ops with their one attempt row; queued rows
are fresh QUEUED no-ops. Creation times are a millisecond apart, the last
just before now. Ids are 22 characters in creation order, as the store
makes them (lrod.domain.names): here 9 hex digits of the row's creation
millisecond (modulo 2^36), then 13 random ones, so the loaded indexes have
the shape the store's own inserts give them.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time

import psycopg

from bench.infra import pg_dsn
from lrod.store.engine import configure_sqlite_connection

SUCCEEDED = "SUCCEEDED"
QUEUED = "QUEUED"
EMPTY = "type.googleapis.com/google.protobuf.Empty"
RETENTION_DAYS = 7

_COLUMNS = (
    "id, owner, job_type, state, priority, input_type, input_value, labels, "
    "attempt, max_attempts, create_time, update_time, run_after, start_time, end_time, "
    "expire_time, cancel_requested, progress_completed, progress_total, progress_stage, "
    "result_type, result_value, error, version"
)

_SQLITE_TS = (
    "strftime('%Y-%m-%d %H:%M:%S', :base + i / 1000, 'unixepoch') "
    "|| printf('.%06d', (i % 1000) * 1000)"
)
_SQLITE_VALUES = {
    SUCCEEDED: (
        "1, 1, ts, ts, ts, ts, ts, "
        f"strftime('%Y-%m-%d %H:%M:%S', :base + i / 1000, 'unixepoch', '+{RETENTION_DAYS} days')"
        " || printf('.%06d', (i % 1000) * 1000), "
        f"0, 0, 0, '', '{EMPTY}', x'', 'null', 3"
    ),
    QUEUED: "0, 1, ts, ts, ts, NULL, NULL, NULL, 0, 0, 0, '', NULL, NULL, NULL, 1",
}
_PG_VALUES = {
    SUCCEEDED: (
        f"1, 1, ts, ts, ts, ts, ts, ts + interval '{RETENTION_DAYS} days', "
        f"false, 0, 0, '', '{EMPTY}', '\\x'::bytea, 'null'::json, 3"
    ),
    QUEUED: "0, 1, ts, ts, ts, NULL, NULL, NULL, false, 0, 0, '', NULL, NULL, NULL, 1",
}


def load(url: str, count: int, state: str, job_type: str = "bench.noop") -> None:
    """Add `count` operations in `state` (with attempts for finished ones)."""
    if count <= 0:
        return
    base = int(time.time()) - count // 1000 - 1
    if url.startswith("sqlite"):
        _load_sqlite(url.removeprefix("sqlite:///"), count, state, job_type, base)
    else:
        _load_pg(url, count, state, job_type, base)


def _load_sqlite(path: str, count: int, state: str, job_type: str, base: int) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        configure_sqlite_connection(conn)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"""
            INSERT INTO operations ({_COLUMNS})
            WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :count - 1)
            SELECT printf('%09x', (:base * 1000 + i) % 68719476736)
                   || substr(hex(randomblob(7)), 1, 13),
                   'anonymous', :job_type, :state, 0, '{EMPTY}', x'', '{{}}',
                   {_SQLITE_VALUES[state]}
            FROM (SELECT i, {_SQLITE_TS} AS ts FROM n)
            """,
            {"count": count, "job_type": job_type, "state": state, "base": base},
        )
        if state == SUCCEEDED:
            conn.execute(
                """
                INSERT INTO attempts (operation_id, number, worker_id, lease_token,
                                      start_time, end_time, outcome, error)
                SELECT o.id, 1, 'bench-loader', lower(hex(randomblob(16))), o.start_time,
                       o.end_time, 'SUCCEEDED', 'null'
                FROM operations o
                WHERE o.state = 'SUCCEEDED'
                  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.operation_id = o.id)
                """
            )
        conn.execute("COMMIT")
        conn.execute("ANALYZE")


def _load_pg(url: str, count: int, state: str, job_type: str, base: int) -> None:
    with psycopg.connect(pg_dsn(url)) as conn:
        conn.execute(
            f"""
            INSERT INTO operations ({_COLUMNS})
            SELECT lpad(to_hex((%(base)s::bigint * 1000 + i) %% 68719476736), 9, '0')
                   || upper(substr(md5(random()::text || i::text), 1, 13)), 'anonymous',
                   %(job_type)s, %(state)s, 0, '{EMPTY}', '\\x'::bytea, '{{}}'::json,
                   {_PG_VALUES[state]}
            FROM (SELECT i, to_timestamp(%(base)s + i / 1000.0) AS ts
                  FROM generate_series(0, %(count)s - 1) AS i) AS s
            """,
            {"count": count, "job_type": job_type, "state": state, "base": base},
        )
        if state == SUCCEEDED:
            conn.execute(
                """
                INSERT INTO attempts (operation_id, number, worker_id, lease_token,
                                      start_time, end_time, outcome, error)
                SELECT o.id, 1, 'bench-loader', md5(random()::text), o.start_time,
                       o.end_time, 'SUCCEEDED', 'null'::json
                FROM operations o
                WHERE o.state = 'SUCCEEDED'
                  AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.operation_id = o.id)
                """
            )
        conn.commit()
    with psycopg.connect(pg_dsn(url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE operations")
        conn.execute("VACUUM ANALYZE attempts")


def count(url: str) -> int:
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute("SELECT count(*) FROM operations").fetchone()[0])
    with psycopg.connect(pg_dsn(url)) as conn:
        row = conn.execute("SELECT count(*) FROM operations").fetchone()
        return int(row[0]) if row else 0


def sample_names(url: str, limit: int) -> list[str]:
    """Names of `limit` stored operations, spread over the table."""
    query = f"SELECT id FROM operations ORDER BY random() LIMIT {int(limit)}"
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return [f"operations/{r[0]}" for r in conn.execute(query)]
    with psycopg.connect(pg_dsn(url)) as conn:
        return [f"operations/{r[0]}" for r in conn.execute(query)]
