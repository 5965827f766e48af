"""The SQL of the console's reads and of worker presence: the overview's
counts per job type and the workers table. Plain SQLAlchemy Core that
compiles the same for SQLite and PostgreSQL. No I/O here."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import Delete, Select, Table, Update, case, delete, func, or_, select, update

from lrod.domain.states import State
from lrod.store.protocol import JobTypeOverview, WorkerRecord
from lrod.store.schema import OperationRow, WorkerRow

_OPS = cast(Table, OperationRow.__table__)
_T = _OPS.c
WORKERS = cast(Table, WorkerRow.__table__)
_W = WORKERS.c


def _count(state: State) -> Any:
    return func.count(case((_T.state == state.value, 1)))


def overview_query(owner: str | None, since: datetime, now: datetime) -> Select[Any]:
    """Active operations (served by the partial claim and lease indexes) and
    those finished since `since` (ix_operations_finished), grouped by type."""
    due_queued = (_T.state == State.QUEUED.value) & (_T.run_after <= now)
    stmt = (
        select(
            _T.job_type,
            _count(State.QUEUED).label("queued"),
            _count(State.RUNNING).label("running"),
            _count(State.SUCCEEDED).label("succeeded"),
            _count(State.FAILED).label("failed"),
            _count(State.CANCELLED).label("cancelled"),
            func.min(case((due_queued, _T.run_after))).label("oldest_due"),
        )
        .where(
            or_(
                _T.state.in_([State.QUEUED.value, State.RUNNING.value]),
                _T.end_time >= since,
            )
        )
        .group_by(_T.job_type)
        .order_by(_T.job_type)
    )
    return stmt if owner is None else stmt.where(_T.owner == owner)


def to_overview(row: Any) -> JobTypeOverview:
    return JobTypeOverview(
        row.job_type,
        row.queued,
        row.running,
        row.succeeded,
        row.failed,
        row.cancelled,
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
