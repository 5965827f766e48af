"""Creating operations inside a write transaction: a repeat of a stored
request_id or active dedupe key returns what is there; the rest go in with one
constant INSERT for all their rows (create_sql.py). `create_all` is
BatchSubmit's: all of them or none. On PostgreSQL a batch none of whose
request_ids or dedupe keys is stored goes in as ONE statement instead
(`create_fresh`), answered as this path would answer it (`fresh_plan`).

A new operation's answer is built from the job itself (`created`): every
column of its row is known before the insert (the store sets nothing the
job does not give), so nothing is read back or converted from a row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, select
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.errors import AlreadyExists, LrodError
from lrod.domain.operation import Operation, Progress
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.changes import Changes
from lrod.store.create_sql import CreateSql, CreateSqlOne, HandedOff
from lrod.store.protocol import HandOff
from lrod.store.rows import to_operation
from lrod.store.statements import OPS, T

STORED_REQUEST_IDS = select(OPS).where(
    T.owner == bindparam("owner"), T.request_id.in_(bindparam("ids", expanding=True))
)
STORED_REQUEST_ID = select(OPS).where(
    T.owner == bindparam("owner"), T.request_id == bindparam("request_id")
)
ACTIVE_DEDUPE_KEY = select(OPS).where(
    T.owner == bindparam("owner"),
    T.job_type == bindparam("job_type"),
    T.dedupe_key == bindparam("dedupe_key"),
    T.state.in_([State.QUEUED.value, State.RUNNING.value]),
)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)


_DEFAULT_PROGRESS = Progress()
_new = object.__new__


def created(job: NewJob) -> Operation:
    """The operation the INSERT of `job` stores (create_sql.py), as a read of
    that row returns it (times in UTC, the timeout as its stored seconds).
    Built by filling its __dict__, as rows.to_operation does (its frozen
    __init__ costs several times more); every field is set here, and
    tests/api/test_submit_answer.py holds the result to a read's."""
    timeout = job.timeout
    create_time = _utc(job.create_time)
    op = _new(Operation)
    op.__dict__.update(
        id=job.id,
        owner=job.owner,
        job_type=job.job_type,
        state=State.QUEUED,
        input=job.input,
        create_time=create_time,
        update_time=create_time,
        run_after=_utc(job.run_after),
        priority=job.priority,
        labels=job.labels,
        attempt=0,
        max_attempts=job.max_attempts,
        start_time=None,
        end_time=None,
        expire_time=None,
        cancel_requested=False,
        progress=_DEFAULT_PROGRESS,
        result=None,
        error=None,
        last_attempt_error=None,
        timeout=timedelta(seconds=timeout.total_seconds()) if timeout is not None else None,
        request_id=job.request_id,
        dedupe_key=job.dedupe_key,
        lease_owner=None,
        lease_expires_at=None,
        version=1,
        notify_url=job.notify_url,
        delivery=None,
    )
    return op


def claimed(job: NewJob, hand_off: HandOff) -> Operation:
    """The operation `insert_claimed` stores for `job` handed off: as
    `created`, then as a claim under `hand_off`'s lease leaves it."""
    op = created(job)
    now = _utc(hand_off.now)
    op.__dict__.update(
        state=State.RUNNING,
        attempt=1,
        start_time=now,
        update_time=now,
        lease_owner=hand_off.worker_id,
        lease_expires_at=_utc(hand_off.lease_expires_at),
    )
    return op


def claimed_inserted(
    changes: Changes, items: Sequence[HandedOff], handed: Sequence[bool]
) -> list[tuple[Operation, bool]]:
    """The answers for `items` just inserted by `insert_claimed` (`handed`:
    stored claimed), and what their insert changed: the ones queued after
    all are work for the claim loops; the claimed ones are not."""
    answers: list[tuple[Operation, bool]] = []
    for (job, _, hand_off), ok in zip(items, handed, strict=True):
        changes.operations.add(job.id)
        if ok:
            answers.append((claimed(job, hand_off), True))
            continue
        answers.append((created(job), True))
        changes.work_at(job.run_after)
    return answers


async def create_claimed(
    conn: AsyncConnection, changes: Changes, items: Sequence[HandedOff], sql: CreateSql
) -> list[tuple[Operation, bool] | BaseException]:
    """As `create_many` (the same repeats, by request_id and dedupe key),
    but a new job is stored claimed under its hand-off's lease, unless queued
    work must go first (`CreateSql.insert_claimed`). A job with a dedupe key
    is stored queued (its check is one at a time). The answer's state says
    which: RUNNING (and created) is handed off."""
    results: dict[int, tuple[Operation, bool] | BaseException] = {}
    stored = await _stored_request_ids(conn, [(job, fp) for job, fp, _ in items])
    fresh: list[int] = []
    first_of: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for index, (job, fingerprint, _) in enumerate(items):
        if job.dedupe_key:
            results[index] = await create_one(conn, changes, job, fingerprint, sql)
            continue
        if job.request_id:
            key = (job.owner, job.request_id)
            row = stored.get(key)
            if row is not None:
                results[index] = _repeat(job, fingerprint, row.request_fingerprint, row)
                continue
            if key in first_of:
                repeats.append((index, first_of[key]))
                continue
            first_of[key] = index
        fresh.append(index)
    if fresh:
        new = [items[i] for i in fresh]
        handed = await sql.insert_claimed(conn, new)
        answers = claimed_inserted(changes, new, handed)
        for index, answer in zip(fresh, answers, strict=True):
            results[index] = answer
    for index, first in repeats:
        job, fingerprint, _ = items[index]
        earlier = results[first]
        if isinstance(earlier, BaseException):
            results[index] = earlier
        else:
            results[index] = _repeat(job, fingerprint, items[first][1], earlier[0])
    return [results[i] for i in range(len(items))]


async def create_many(
    conn: AsyncConnection,
    changes: Changes,
    items: Sequence[tuple[NewJob, str]],
    sql: CreateSql,
) -> list[tuple[Operation, bool] | BaseException]:
    """The request_ids of the batch are looked up in one SELECT: a stored one
    returns what is there (or is refused, if its request differs), a repeat
    inside the batch returns its first. Jobs with a dedupe key are checked
    and inserted one at a time. The rest cannot conflict (within this
    transaction; a concurrent writer's conflict raises IntegrityError for
    the caller to handle) and go in with one constant INSERT for all rows."""
    results: dict[int, tuple[Operation, bool] | BaseException] = {}
    stored = await _stored_request_ids(conn, items)
    fresh: dict[str, int] = {}
    first_of: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for index, (job, fingerprint) in enumerate(items):
        if job.dedupe_key:
            results[index] = await create_one(conn, changes, job, fingerprint, sql)
            continue
        if job.request_id:
            key = (job.owner, job.request_id)
            row = stored.get(key)
            if row is not None:
                results[index] = _repeat(job, fingerprint, row.request_fingerprint, row)
                continue
            if key in first_of:
                repeats.append((index, first_of[key]))
                continue
            first_of[key] = index
        fresh[job.id] = index
    if fresh:
        new = [items[i] for i in fresh.values()]
        await sql.insert(conn, new)
        for index, answer in zip(fresh.values(), inserted(changes, new), strict=True):
            results[index] = answer
    for index, first in repeats:
        job, fingerprint = items[index]
        earlier = results[first]
        if isinstance(earlier, BaseException):
            results[index] = earlier
        else:
            results[index] = _repeat(job, fingerprint, items[first][1], earlier[0])
    return [results[i] for i in range(len(items))]


@dataclass(frozen=True)
class FreshPlan:
    """A batch of creates as one statement of the new ones
    (CreateSqlOne.insert_fresh): the members it stores (`firsts`, the
    first of each request_id), and the repeats of one of them inside the
    batch (index, index of its first)."""

    firsts: list[int]
    repeats: list[tuple[int, int]]


def fresh_plan(items: Sequence[tuple[NewJob, str]], *, whole: bool) -> FreshPlan | None:
    """How `create_fresh` answers `items` if none of them is stored already:
    as `create_many` (and `create_one` one after the other) would, a member
    repeating an earlier one's request_id gets the earlier one's answer (or
    is refused, its request differing). None where the one statement cannot
    answer as they would: two members with one dedupe key (the second is a
    repeat of the first), or, for a batch stored `whole` (BatchSubmit), a
    member refused."""
    firsts: list[int] = []
    repeats: list[tuple[int, int]] = []
    first_of: dict[tuple[str, str], int] = {}
    keys: set[tuple[str, str, str]] = set()
    for index, (job, fingerprint) in enumerate(items):
        if job.dedupe_key:
            key = (job.owner, job.job_type, job.dedupe_key)
            if key in keys:
                return None
            keys.add(key)
        if job.request_id:
            first = first_of.setdefault((job.owner, job.request_id), index)
            if first != index:
                if whole and items[first][1] != fingerprint:
                    return None
                repeats.append((index, first))
                continue
        firsts.append(index)
    return FreshPlan(firsts, repeats)


async def create_fresh(
    sql: CreateSqlOne, changes: Changes, items: Sequence[tuple[NewJob, str]], plan: FreshPlan
) -> list[tuple[Operation, bool] | BaseException] | None:
    """The answers for `items`, all stored in ONE statement (with their
    NOTIFY) if none of them repeats a stored request_id or an active dedupe
    key; None if one does, and nothing was stored: for the transaction's
    path (`create_many`) to answer instead."""
    firsts = [items[i] for i in plan.firsts]
    if not await sql.insert_fresh(firsts):
        return None
    results: dict[int, tuple[Operation, bool] | BaseException] = dict(
        zip(plan.firsts, inserted(changes, firsts), strict=True)
    )
    for index, first in plan.repeats:
        job, fingerprint = items[index]
        earlier = results[first]
        assert not isinstance(earlier, BaseException)
        results[index] = _repeat(job, fingerprint, items[first][1], earlier[0])
    return [results[i] for i in range(len(items))]


def cannot_repeat(items: Sequence[tuple[NewJob, str]]) -> bool:
    """Whether none of `items` can be a repeat (no request_id, no dedupe
    key): they all go in as they are, with one INSERT and nothing read."""
    return not any(job.request_id or job.dedupe_key for job, _ in items)


def inserted(changes: Changes, items: Sequence[tuple[NewJob, str]]) -> list[tuple[Operation, bool]]:
    """The answers for `items` just inserted, and what their insert changed."""
    changes.operations.update(job.id for job, _ in items)
    changes.work_at(min(job.run_after for job, _ in items))
    return [(created(job), True) for job, _ in items]


async def _stored_request_ids(
    conn: AsyncConnection, items: Sequence[tuple[NewJob, str]]
) -> dict[tuple[str, str], Any]:
    wanted: dict[str, set[str]] = {}
    for job, _ in items:
        if job.request_id and not job.dedupe_key:
            wanted.setdefault(job.owner, set()).add(job.request_id)
    found: dict[tuple[str, str], Any] = {}
    for owner, ids in wanted.items():
        rows = await conn.execute(STORED_REQUEST_IDS, {"owner": owner, "ids": sorted(ids)})
        found.update(((owner, row.request_id), row) for row in rows)
    return found


def _repeat(
    job: NewJob, fingerprint: str, stored_fingerprint: str | None, stored: Any
) -> tuple[Operation, bool] | BaseException:
    if stored_fingerprint != fingerprint:
        return _reused(job)
    return (stored if isinstance(stored, Operation) else to_operation(stored)), False


def _reused(job: NewJob) -> AlreadyExists:
    return AlreadyExists(
        "This request_id was already used for a different request.",
        reason="REQUEST_ID_REUSED",
        metadata={"request_id": job.request_id or ""},
    )


async def create_one(
    conn: AsyncConnection, changes: Changes, job: NewJob, fingerprint: str, sql: CreateSql
) -> tuple[Operation, bool] | BaseException:
    try:
        existing = await duplicate_of(conn, job, fingerprint)
    except AlreadyExists as refused:
        return refused
    if existing is not None:
        return existing, False
    await sql.insert(conn, [(job, fingerprint)])
    changes.operations.add(job.id)
    changes.work_at(job.run_after)
    return created(job), True


async def duplicate_of(conn: AsyncConnection, job: NewJob, fingerprint: str) -> Operation | None:
    if job.request_id:
        row = (
            await conn.execute(
                STORED_REQUEST_ID, {"owner": job.owner, "request_id": job.request_id}
            )
        ).first()
        if row is not None:
            if row.request_fingerprint != fingerprint:
                raise _reused(job)
            return to_operation(row)
    if job.dedupe_key:
        row = (
            await conn.execute(
                ACTIVE_DEDUPE_KEY,
                {"owner": job.owner, "job_type": job.job_type, "dedupe_key": job.dedupe_key},
            )
        ).first()
        if row is not None:
            return to_operation(row)
    return None


def stored_repeats(
    conn: Connection, items: Sequence[tuple[NewJob, str]]
) -> list[Operation | BaseException | None]:
    """As `duplicate_of` for each item, in one read (a synchronous
    connection), writing nothing."""
    found: list[Operation | BaseException | None] = []
    for job, fingerprint in items:
        row = None
        if job.request_id:
            params = {"owner": job.owner, "request_id": job.request_id}
            row = conn.execute(STORED_REQUEST_ID, params).first()
            if row is not None and row.request_fingerprint != fingerprint:
                found.append(_reused(job))
                continue
        if row is None and job.dedupe_key:
            params = {"owner": job.owner, "job_type": job.job_type, "dedupe_key": job.dedupe_key}
            row = conn.execute(ACTIVE_DEDUPE_KEY, params).first()
        found.append(None if row is None else to_operation(row))
    return found


def refused_member(index: int, error: BaseException) -> BaseException:
    """A batch member's refusal, naming its place in the batch."""
    if not isinstance(error, LrodError):
        return error
    return type(error)(
        f"requests[{index}]: {error.message}",
        reason=error.reason,
        metadata={**error.metadata, "index": str(index)},
        violations=error.violations,
        retry_after_seconds=error.retry_after_seconds,
    )
