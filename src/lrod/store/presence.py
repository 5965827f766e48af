"""The SQL of the console's reads and of worker presence: the overview's
counts per job type and the workers table. Plain SQLAlchemy Core that
compiles the same for SQLite and PostgreSQL. No I/O here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Delete,
    Select,
    String,
    Table,
    Update,
    case,
    delete,
    func,
    literal_column,
    null,
    select,
    union_all,
    update,
)

from lrod.domain.states import State
from lrod.store.protocol import JobTypeOverview, WorkerRecord
from lrod.store.schema import OperationRow, WorkerRow

_OPS = cast(Table, OperationRow.__table__)
_T = _OPS.c
WORKERS = cast(Table, WorkerRow.__table__)
_W = WORKERS.c


def _active(state: State, now: datetime) -> Select[Any]:
    """Per job type and owner, the operations in `state` (and, queued, the
    oldest due), read through the state's partial index: a MATERIALIZED CTE
    whose WHERE is the index's own (the state written into the SQL, so that
    it matches at planning time), as many rows as are in that state."""
    value = literal_column(f"'{state.value}'", String)
    rows = (
        select(_T.owner, _T.job_type, _T.run_after)
        .where(_T.state == value)
        .cte()
        .prefix_with("MATERIALIZED")
    )
    due = rows.c.run_after <= now
    oldest_due = func.min(case((due, rows.c.run_after))) if state is State.QUEUED else null()
    return select(
        rows.c.owner,
        rows.c.job_type,
        value.label("state"),
        func.count().label("n"),
        oldest_due.label("oldest_due"),
    ).group_by(rows.c.job_type, rows.c.owner)


def overview_query(owner: str | None, since: datetime, now: datetime) -> Select[Any]:
    """Per job type: the active operations (each state through its partial
    index: claim, lease) and those finished since `since`
    (ix_operations_finished). Asked as one select with `state IN (...) OR
    end_time >= since`, no index served the OR, and both databases read every
    stored row: with 1,000,000 finished before the window and 20,000 queued,
    211-226 ms on SQLite and 138-144 ms on PostgreSQL, now 14-17 and 12-14
    (bench/findings.md, day 15). An owner's overview is filtered
    outside the parts: with `owner = ?` in them, SQLite's planner read the
    whole owner's rows through ix_operations_list instead. The finished part
    groups by job type first for the same reason (by owner first, the
    planner would walk ix_operations_list for the order)."""
    active = [State.QUEUED.value, State.RUNNING.value]
    finished = (
        select(
            _T.owner,
            _T.job_type,
            _T.state,
            func.count().label("n"),
            null().label("oldest_due"),
        )
        .where(_T.end_time >= since, _T.state.not_in(active))
        .group_by(_T.job_type, _T.state, _T.owner)
    )
    # MATERIALIZED too (a few rows per job type and owner): else both
    # databases push an owner's filter down into the parts.
    parts = (
        union_all(_active(State.QUEUED, now), _active(State.RUNNING, now), finished)
        .cte()
        .prefix_with("MATERIALIZED")
    )

    def count(state: State) -> Any:
        return func.coalesce(func.sum(case((parts.c.state == state.value, parts.c.n))), 0)

    stmt = (
        select(
            parts.c.job_type,
            count(State.QUEUED).label("queued"),
            count(State.RUNNING).label("running"),
            count(State.SUCCEEDED).label("succeeded"),
            count(State.FAILED).label("failed"),
            count(State.CANCELLED).label("cancelled"),
            func.min(parts.c.oldest_due).label("oldest_due"),
        )
        .group_by(parts.c.job_type)
        .order_by(parts.c.job_type)
    )
    return stmt if owner is None else stmt.where(parts.c.owner == owner)


def to_overview(row: Any) -> JobTypeOverview:
    # int(): PostgreSQL's sum of counts is a numeric (a Decimal here).
    return JobTypeOverview(
        row.job_type,
        int(row.queued),
        int(row.running),
        int(row.succeeded),
        int(row.failed),
        int(row.cancelled),
        row.oldest_due,
    )


def worker_values(worker: WorkerRecord) -> dict[str, Any]:
    return {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "slots": worker.slots,
        "running": worker.running,
        "job_types": list(worker.job_types),
        "started": worker.started,
        "heartbeat": worker.heartbeat,
    }


def remove_worker(worker_id: str) -> Delete:
    return delete(WORKERS).where(_W.id == worker_id)


def heartbeat_worker(worker_id: str, now: datetime, running: int) -> Update:
    return update(WORKERS).where(_W.id == worker_id).values(heartbeat=now, running=running)


def remove_stale(before: datetime) -> Delete:
    return delete(WORKERS).where(_W.heartbeat < before)


LIST_WORKERS = select(WORKERS).order_by(_W.host, _W.started, _W.id)


def to_worker(row: Any) -> WorkerRecord:
    return WorkerRecord(
        row.id,
        row.host,
        row.pid,
        row.slots,
        row.running,
        tuple(row.job_types or ()),
        row.started,
        row.heartbeat,
    )
