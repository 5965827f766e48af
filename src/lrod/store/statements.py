"""The SQL of the operation store: table handles, prebuilt statements, query
builders and the column values of each kind of write. No I/O here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    ARRAY,
    Select,
    String,
    Table,
    any_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.errors import Code, NotFound, OperationExpired
from lrod.domain.filters import Filter
from lrod.domain.operation import Operation, Progress, PublicError
from lrod.domain.paging import Cursor
from lrod.domain.retry import LEASE_EXPIRED, JobPolicy, decide_retry
from lrod.domain.states import State, check_move
from lrod.store.filtering import after_cursor, filter_clauses
from lrod.store.rows import error_to_json
from lrod.store.schema import (
    AttemptRow,
    DeliveryRow,
    ExpiredRow,
    LabelRow,
    OperationRow,
    ServerKeyRow,
)

OPS = cast(Table, OperationRow.__table__)
T = OPS.c
LABELS = cast(Table, LabelRow.__table__)
ATTEMPTS = cast(Table, AttemptRow.__table__)
EXPIRED = cast(Table, ExpiredRow.__table__)
SERVER_KEYS = cast(Table, ServerKeyRow.__table__)
DELIVERIES = cast(Table, DeliveryRow.__table__)

INSERT_OPERATIONS = insert(OPS).returning(*T, sort_by_parameter_order=True)

# How long an expired operation's name still answers "expired" (not "unknown").
TOMBSTONE_RETENTION = timedelta(days=30)

CANCELLED_ERROR = PublicError(Code.CANCELLED, "The operation was cancelled.", "OPERATION_CANCELLED")


def due_query(now: datetime, limit: int, job_types: Sequence[str]) -> Select[Any]:
    """The jobs a worker claims next: highest priority, then earliest due.
    ix_operations_claim (partial on QUEUED) serves it in index order, and
    SKIP LOCKED lets concurrent workers take different rows."""
    return (
        select(T.id)
        .where(T.state == State.QUEUED.value, T.run_after <= now)
        .where(T.job_type.in_(job_types))
        .order_by(T.priority.desc(), T.run_after, T.create_time)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


def owned_by(owner: str | None) -> tuple[Any, ...]:
    """The owner clause: None (an admin's scope) is every owner."""
    return () if owner is None else (T.owner == owner,)


def list_query(
    owner: str | None,
    query: Filter,
    after: Cursor | None,
    limit: int,
    now: datetime,
    oldest_first: bool = False,
) -> Select[Any]:
    """One page of a caller's operations (every owner's for None), newest
    first (or oldest first), by keyset (no OFFSET); ix_operations_list
    (owner, create_time, id) serves it in either direction."""
    order = (T.create_time, T.id) if oldest_first else (T.create_time.desc(), T.id.desc())
    stmt = (
        select(OPS)
        .where(*owned_by(owner), (T.expire_time.is_(None)) | (T.expire_time > now))
        .where(*filter_clauses(query))
        .order_by(*order)
        .limit(limit)
    )
    return stmt if after is None else stmt.where(after_cursor(after, oldest_first))


def progress_values(progress: Progress | None) -> dict[str, Any]:
    if progress is None:
        return {}
    return {
        "progress_completed": progress.completed,
        "progress_total": progress.total,
        "progress_stage": progress.stage,
    }


def terminal_values(
    state: State, now: datetime, retention: timedelta, error: PublicError | None
) -> dict[str, Any]:
    return {
        "state": state.value,
        "end_time": now,
        "expire_time": now + retention,
        "error": error_to_json(error),
    }


def rescued_values(op: Operation, now: datetime, policy: JobPolicy) -> dict[str, Any]:
    """A job whose lease expired: cancelled if a cancel was asked, else the
    lost lease is a temporary failure under the job type's policy, the same
    rule as a handler's (domain.retry.decide_retry)."""
    if op.cancel_requested:
        check_move(op.state, State.CANCELLED)
        return terminal_values(State.CANCELLED, now, policy.retention, CANCELLED_ERROR)
    decision = decide_retry(
        error=LEASE_EXPIRED,
        retryable=True,
        attempt=op.attempt,
        max_attempts=op.max_attempts,
        backoff=policy.backoff,
        now=now,
    )
    lost = {"last_attempt_error": error_to_json(LEASE_EXPIRED)}
    if decision.retry_at is None:
        check_move(op.state, State.FAILED)
        return terminal_values(State.FAILED, now, policy.retention, decision.error) | lost
    check_move(op.state, State.QUEUED)
    return {"state": State.QUEUED.value, "run_after": decision.retry_at} | lost


def state_values(states: frozenset[State]) -> list[str]:
    return sorted(s.value for s in states)


# One statement renews every lease a worker pool holds, each row fenced by
# its claim's token (tokens are random per claim, so the pair is checked too).
RENEW_LEASES = (
    update(OPS)
    .where(
        T.id.in_(bindparam("ids", expanding=True)),
        T.lease_token.in_(bindparam("tokens", expanding=True)),
        T.state == State.RUNNING.value,
    )
    .values(lease_expires_at=bindparam("expires", type_=T.lease_expires_at.type))
    .returning(T.id, T.lease_token, T.cancel_requested)
)

GET_OPERATION = select(OPS).where(T.id == bindparam("id"), T.owner == bindparam("owner"))
GET_TOMBSTONE = select(EXPIRED.c.id).where(
    EXPIRED.c.id == bindparam("id"), EXPIRED.c.owner == bindparam("owner")
)
# An admin's reads: any owner.
GET_ANY_OPERATION = select(OPS).where(T.id == bindparam("id"))
# Only what tells whether a kept answer is current (SQLite's get_or_kept:
# a narrow row costs a fraction of the whole one, and a second statement
# on the loop's thread costs no round trip).
GET_VERSION = select(T.version, T.expire_time).where(
    T.id == bindparam("id"), T.owner == bindparam("owner")
)
GET_ANY_VERSION = select(T.version, T.expire_time).where(T.id == bindparam("id"))
GET_ANY_TOMBSTONE = select(EXPIRED.c.id).where(EXPIRED.c.id == bindparam("id"))
# A done operation's webhook delivery, read with it.
GET_DELIVERY = select(DELIVERIES).where(DELIVERIES.c.operation_id == bindparam("id"))
# Many by id in one constant statement, for the reader on asyncpg (direct_reads.py),
# which binds a list as an array: any number of ids, one prepared statement.
GET_OPERATIONS_IN_ARRAY = select(OPS).where(T.id == any_(bindparam("ids", type_=ARRAY(String))))
GET_DELIVERIES_IN_ARRAY = select(DELIVERIES).where(
    DELIVERIES.c.operation_id == any_(bindparam("ids", type_=ARRAY(String)))
)


def _in_state(state: State, *columns: Any) -> Any:
    # MATERIALIZED: each state's rows are read through its partial index
    # (ix_operations_claim, ix_operations_lease), as many rows as are in that
    # state. Written as one select with `state IN (...)` and grouped by owner,
    # no index matched it, and both databases read every stored row:
    # 195 ms a read on SQLite at 1,000,000 stored, every second of Submits.
    # The state written into the SQL, not bound: a partial index serves a
    # query whose WHERE implies the index's at planning time.
    value = literal_column(f"'{state.value}'", String)
    return select(*columns).where(T.state == value).cte().prefix_with("MATERIALIZED")


_QUEUED = _in_state(State.QUEUED, T.owner, func.length(T.input_value).label("size"))
_RUNNING = _in_state(State.RUNNING, T.owner)
# The quotas' counts (OperationStore.usage): per owner and active state, the
# rows and (queued) their input bytes.
USAGE = union_all(
    select(
        _QUEUED.c.owner,
        literal_column(f"'{State.QUEUED.value}'").label("state"),
        func.count().label("n"),
        func.coalesce(func.sum(_QUEUED.c.size), literal_column("0")).label("size"),
    ).group_by(_QUEUED.c.owner),
    select(
        _RUNNING.c.owner,
        literal_column(f"'{State.RUNNING.value}'").label("state"),
        func.count().label("n"),
        literal_column("0").label("size"),
    ).group_by(_RUNNING.c.owner),
)


def not_found(op_id: str) -> NotFound:
    return NotFound(
        f"Operation operations/{op_id} was not found.", metadata={"name": f"operations/{op_id}"}
    )


def expired(op_id: str) -> OperationExpired:
    return OperationExpired(
        f"Operation operations/{op_id} has expired and was removed.",
        metadata={"name": f"operations/{op_id}"},
    )


async def delete_rows(conn: AsyncConnection, ids: list[str]) -> None:
    await conn.execute(delete(LABELS).where(LABELS.c.operation_id.in_(ids)))
    await conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.operation_id.in_(ids)))
    await conn.execute(delete(DELIVERIES).where(DELIVERIES.c.operation_id.in_(ids)))
    await conn.execute(delete(OPS).where(T.id.in_(ids)))
