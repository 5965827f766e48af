"""Creating operations inside a write transaction: a repeat of a stored
request_id or active dedupe key returns what is there; the rest go in with one
cached multi-row INSERT ... RETURNING."""

from __future__ import annotations

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.errors import AlreadyExists
from lrod.domain.operation import Operation
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.changes import Changes
from lrod.store.rows import new_row, to_operation
from lrod.store.statements import INSERT_OPERATIONS, LABELS, OPS, T


async def create_many(
    conn: AsyncConnection, changes: Changes, items: list[tuple[NewJob, str]]
) -> list[tuple[Operation, bool] | BaseException]:
    """Jobs with a request_id or dedupe key may repeat one stored before
    (or earlier in this batch): each is checked and inserted in turn. The
    rest cannot conflict and go in with one multi-row INSERT."""
    results: dict[int, tuple[Operation, bool] | BaseException] = {}
    plain: dict[str, int] = {}
    for index, (job, fingerprint) in enumerate(items):
        if job.request_id or job.dedupe_key:
            results[index] = await create_one(conn, changes, job, fingerprint)
        else:
            plain[job.id] = index
    if plain:
        # executemany with RETURNING: SQLAlchemy batches it into multi-row
        # INSERTs ("insertmanyvalues") from one cached statement.
        rows = (
            await conn.execute(
                INSERT_OPERATIONS,
                [new_row(items[i][0], items[i][1]) for i in plain.values()],
            )
        ).all()
        for row in rows:
            results[plain[row.id]] = (to_operation(row), True)
        labels = [
            {"operation_id": job.id, "key": k, "value": v}
            for job, _ in (items[i] for i in plain.values())
            for k, v in job.labels.items()
        ]
        if labels:
            await conn.execute(insert(LABELS), labels)
        changes.operations.update(plain)
        due = min(items[i][0].run_after for i in plain.values())
        if changes.work_due is not None:
            due = min(due, changes.work_due)
        changes.work, changes.work_due = True, due
    return [results[i] for i in range(len(items))]


async def create_one(
    conn: AsyncConnection, changes: Changes, job: NewJob, fingerprint: str
) -> tuple[Operation, bool] | BaseException:
    try:
        existing = await duplicate_of(conn, job, fingerprint)
    except AlreadyExists as refused:
        return refused
    if existing is not None:
        return existing, False
    row = (await conn.execute(INSERT_OPERATIONS, [new_row(job, fingerprint)])).one()
    if job.labels:
        await conn.execute(
            insert(LABELS),
            [{"operation_id": job.id, "key": k, "value": v} for k, v in job.labels.items()],
        )
    changes.operations.add(job.id)
    due = job.run_after if changes.work_due is None else min(changes.work_due, job.run_after)
    changes.work, changes.work_due = True, due
    return to_operation(row), True


async def duplicate_of(conn: AsyncConnection, job: NewJob, fingerprint: str) -> Operation | None:
    if job.request_id:
        row = (
            await conn.execute(
                select(OPS).where(T.owner == job.owner, T.request_id == job.request_id)
            )
        ).first()
        if row is not None:
            if row.request_fingerprint != fingerprint:
                raise AlreadyExists(
                    "This request_id was already used for a different request.",
                    reason="REQUEST_ID_REUSED",
                    metadata={"request_id": job.request_id},
                )
            return to_operation(row)
    if job.dedupe_key:
        row = (
            await conn.execute(
                select(OPS).where(
                    T.owner == job.owner,
                    T.job_type == job.job_type,
                    T.dedupe_key == job.dedupe_key,
                    T.state.in_([State.QUEUED.value, State.RUNNING.value]),
                )
            )
        ).first()
        if row is not None:
            return to_operation(row)
    return None
