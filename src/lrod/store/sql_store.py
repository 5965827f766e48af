"""The operation store on SQLAlchemy Core: one class for SQLite and PostgreSQL.

Every write runs in one transaction on the writer engine and, once committed,
tells the ChangeListener what changed. Worker writes are fenced by the lease
token of the claim, so a worker that lost its lease cannot overwrite a newer
attempt.
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from sqlalchemy import (
    Connection,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from lrod.domain.errors import FailedPrecondition, NotFound, Unavailable
from lrod.domain.filters import Filter
from lrod.domain.operation import Operation, Payload, Progress, PublicError, past_expiry
from lrod.domain.paging import Cursor
from lrod.domain.retry import LEASE_EXPIRED, JobPolicy
from lrod.domain.states import State, check_move
from lrod.domain.submission import NewJob
from lrod.domain.webhooks import Delivery, DeliveryState
from lrod.store import create_sql, dialect, pg_notify, presence, worker_sql
from lrod.store.changes import Changes
from lrod.store.create_sql import HandedOff
from lrod.store.creates import (
    cannot_repeat,
    claimed_inserted,
    create_claimed,
    create_fresh,
    create_many,
    create_one,
    fresh_plan,
    inserted,
    refused_member,
    stored_repeats,
)
from lrod.store.deliveries import (
    claim_due,
    list_deliveries,
    read_deliveries,
    record_attempt,
)
from lrod.store.dialect import create_linger
from lrod.store.endings import record_transitions
from lrod.store.engine import Database
from lrod.store.errors import database_unavailable, statement_failed, translated_errors
from lrod.store.finishes import Finish, FinishPlan, finish_many, finished_alone, writes_outbox
from lrod.store.group_commit import GroupCommit, flush_isolated
from lrod.store.planner_stats import PlannerStatistics
from lrod.store.prepared import PreparedRead
from lrod.store.protocol import (
    AttemptRecord,
    ChangeFeed,
    ChangeListener,
    Claim,
    DeliveryClaim,
    EndedBy,
    HandOff,
    Heartbeat,
    JobTypeOverview,
    KeptAnswers,
    QueueStats,
    Transition,
    TransitionSubscriber,
    Usage,
    WorkerRecord,
)
from lrod.store.rows import error_from_json, error_to_json, to_delivery, to_operation
from lrod.store.statements import (
    ATTEMPTS,
    CANCELLED_ERROR,
    EXPIRED,
    GET_ANY_OPERATION,
    GET_ANY_TOMBSTONE,
    GET_ANY_VERSION,
    GET_DELIVERIES_IN_ARRAY,
    GET_DELIVERY,
    GET_OPERATION,
    GET_OPERATIONS_IN_ARRAY,
    GET_TOMBSTONE,
    GET_VERSION,
    OPS,
    RENEW_LEASES,
    SERVER_KEYS,
    TOMBSTONE_RETENTION,
    USAGE,
    T,
    delete_rows,
    expired,
    list_query,
    not_found,
    owned_by,
    progress_values,
    rescued_values,
    terminal_values,
)
from lrod.store.worker_sql import BeatWrite, ClaimAsk

log = logging.getLogger("lrod.store")


_P = ParamSpec("_P")
_R = TypeVar("_R")
_K = TypeVar("_K")


def _shielded(
    method: Callable[Concatenate[SqlStore, _P], Coroutine[Any, Any, _R]],
) -> Callable[Concatenate[SqlStore, _P], Coroutine[Any, Any, _R]]:
    """Run the call to the end even if its caller is cancelled (a client that
    hangs up, a stopping worker): a database call cancelled half-way can leave
    its connection checked out, and on SQLite there is only one writer.
    `close` waits for calls still under way."""

    @functools.wraps(method)
    async def wrapper(store: SqlStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        call = asyncio.ensure_future(method(store, *args, **kwargs))
        store._track(call)
        return await asyncio.shield(call)

    return wrapper


def _found(found: Any, op_id: str, now: datetime) -> Operation:
    """A get's answer from what it read: (row, delivery), or True for a
    tombstone, False for nothing."""
    if found is True:
        raise expired(op_id)
    if found is False:
        raise not_found(op_id)
    row, delivery = found
    op = to_operation(row)
    _check_unexpired(op.expire_time, op_id, now)
    return op if delivery is None else replace(op, delivery=delivery)


def _check_unexpired(expire_time: datetime | None, op_id: str, now: datetime) -> None:
    """A get's expiry check, of a row's or a kept answer's expire_time."""
    if past_expiry(expire_time, now):
        raise expired(op_id)


def _database_down(error: BaseException) -> bool:
    """Every member of a batch would meet this error alike (or, for
    `_AfterCommit`, has met it already: the batch must not run again). A
    statement the database refused while serving (a statement or lock
    timeout, a serialization failure) is not: it may be one member's."""
    return isinstance(error, Unavailable) and not statement_failed(error)


def _is_claim(item: WorkerWrite) -> bool:
    """What may start a second worker flush (dialect.worker_flushes)."""
    return isinstance(item, ClaimAsk)


def _beats_changed(
    beats: Sequence[BeatWrite], beaten: Sequence[bool | None], changes: Changes
) -> None:
    """The progress the held heartbeats wrote, announced with their commit
    (a change of progress alone: done-only waiters are not woken)."""
    for beat, cancel in zip(beats, beaten, strict=True):
        if cancel is not None and beat.progress is not None:
            changes.operations.add(beat.op_id)
            changes.progressed.add(beat.op_id)


def _queues_for(finishes: Sequence[Finish], ask: ClaimAsk) -> bool:
    """Whether one of `finishes` queues its job again due by the time of the
    claim `ask`, which could take it."""
    return any(
        f.target is State.QUEUED
        and f.values["run_after"] <= ask.now
        and f.claim.operation.job_type in ask.job_types
        for f in finishes
    )


class _AfterCommit(Unavailable):
    """A worker batch committed, then reading its results back failed (a
    bug, not the database): every member gets this error and the batch is
    not run again. Its finishes are stored; its claims' leases expire and
    the rescue hands those jobs on."""

    def __init__(self) -> None:
        super().__init__("The write committed, but its results could not be read back.")


def _settled(call: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a shielded call whose caller left: its error
    (a NotFound for a client past its deadline) is no one's to handle, and
    asyncio would log it as "Task exception was never retrieved"."""
    if not call.cancelled():
        call.exception()


# What the worker writes through its group commit, and what each gets back
# (a finish: the written operation, None if refused; a claim: its rows; a
# heartbeat, SQLite only: whether a cancel was asked, None if not held).
WorkerWrite = Finish | ClaimAsk | BeatWrite
WorkerResult = Operation | list[Any] | bool | None

# Ids per statement of get_many.
_MANY_CHUNK = 500
GET_MANY_OPERATIONS = select(OPS).where(T.id.in_(bindparam("ids", expanding=True)))


class _Silent:
    def operations_changed(self, ids: Any, written: Any = None, progressed: Any = ()) -> None: ...
    def cancel_requested(self, ids: Any) -> None: ...
    def work_available(self, due: datetime | None = None) -> None: ...
    def everything_changed(self) -> None: ...


class SqlStore:
    def __init__(self, database: Database, listener: ChangeListener | None = None) -> None:
        self._db = database
        self.listener: ChangeListener = listener or _Silent()
        self._inflight: set[asyncio.Future[Any]] = set()
        self._subscribers: list[TransitionSubscriber] = []
        # A batch whose database is down fails whole; any other failure is
        # split until it reaches the one member that causes it.
        # The worker's writes: finishing writes and claims share it, so that
        # a claim asked for while finishes wait (the slots they free ask for
        # it) commits in the same transaction as them.
        self._worker_writes: GroupCommit[WorkerWrite, WorkerResult] = GroupCommit(
            self._worker_batch,
            shared=_database_down,
            track=self._track,
            flushes=dialect.worker_flushes(database.writer.dialect),
            beside=_is_claim,
        )
        linger = create_linger(database.url)
        self._creates: GroupCommit[tuple[NewJob, str], tuple[Operation, bool]] = GroupCommit(
            self._create_batch,
            shared=_database_down,
            track=self._track,
            linger=linger.seconds,
            linger_from=linger.from_batch,
        )
        # Submits handed off to this process's idle workers: their own group
        # commit, whose flush settles every hand-off it took (`_hand_off_batch`).
        self._hand_offs: GroupCommit[HandedOff, tuple[Operation, bool]] = GroupCommit(
            self._hand_off_batch, track=self._track
        )
        # GetOperation's statements, compiled once for the reader that runs
        # them on the driver (SQLite inline, PostgreSQL on asyncpg): by
        # scope (an owner's, an admin's), the row, its tombstone, and a done
        # row's webhook delivery.
        reader = database.inline or database.direct
        if reader is not None:
            self._get_prepared = {
                scoped: (
                    reader.prepare(GET_OPERATION if scoped else GET_ANY_OPERATION),
                    reader.prepare(GET_TOMBSTONE if scoped else GET_ANY_TOMBSTONE),
                )
                for scoped in (True, False)
            }
            self._delivery_prepared = reader.prepare(GET_DELIVERY)
            columns = self._get_prepared[True][0].row._fields
            self._version_at = columns.index("version")
            self._expire_at = columns.index("expire_time")
        if reader is not None:
            self._version_prepared = {
                scoped: reader.prepare(GET_VERSION if scoped else GET_ANY_VERSION)
                for scoped in (True, False)
            }
        if database.direct is not None:
            # The wake-up read (get_many), any number of ids in one statement.
            self._many_prepared = (
                database.direct.prepare(GET_OPERATIONS_IN_ARRAY),
                database.direct.prepare(GET_DELIVERIES_IN_ARRAY),
            )
        # Tells this process's notifications from others' (PostgreSQL).
        self.origin = secrets.token_hex(8)
        self._notify = database.notifies
        # How many claims a worker pool over this store keeps outstanding.
        self.claims_in_flight = dialect.claims_in_flight(database.writer.dialect)
        # PostgreSQL: the table's planner statistics refreshed as this
        # store's commits change it (planner_stats.py).
        self._planner_stats = (
            PlannerStatistics(database.writer)
            if dialect.refreshes_planner_statistics(database.writer.dialect)
            else None
        )
        # The claim and the finishing writes, at driver level (worker_sql.py).
        self._worker_sql = worker_sql.for_dialect(database.writer.dialect)
        # The same as whole transactions in one trip (SQLite; None: PostgreSQL).
        self._worker_alone = worker_sql.alone(database.writer)
        # PostgreSQL: each as ONE statement in autocommit, its NOTIFY in it.
        self._worker_one = worker_sql.one_statement(
            database.writer.dialect,
            database.direct.run if database.direct is not None else None,
            self.origin,
        )
        # Submit's INSERT, at driver level too (create_sql.py).
        self._create_sql = create_sql.for_dialect(database.writer.dialect)
        self._insert_alone = create_sql.alone(database.writer)
        # PostgreSQL: as ONE statement in autocommit, its NOTIFY in it.
        self._insert_one = create_sql.one_statement(
            database.writer.dialect,
            database.direct.run if database.direct is not None else None,
            self.origin,
        )

    def _track(self, call: asyncio.Future[Any]) -> None:
        """A call that runs to its end whoever waits for it; `close` waits
        for it too."""
        self._inflight.add(call)
        call.add_done_callback(_settled)
        call.add_done_callback(self._inflight.discard)

    def subscribe(self, subscriber: TransitionSubscriber) -> None:
        """Be told, after each commit, of the moves through the seam where
        jobs end (endings.py) that this store made."""
        self._subscribers.append(subscriber)

    def notification_listener(self) -> ChangeFeed:
        """What tells this process of other processes' writes: LISTEN/NOTIFY
        on PostgreSQL, a data_version watch on SQLite."""
        return self._db.change_feed(self.listener, self.origin)

    # -- transactions -----------------------------------------------------
    @asynccontextmanager
    async def _write(self) -> AsyncIterator[tuple[AsyncConnection, Changes]]:
        changes = Changes()
        with translated_errors():
            async with self._db.writer.begin() as conn:
                yield conn, changes
                if self._notify and (changes.operations or changes.cancels or changes.work):
                    payload = pg_notify.encode(
                        self.origin,
                        changes.operations,
                        changes.cancels,
                        changes.work,
                        changes.work_due,
                    )
                    await pg_notify.send(conn, payload)
        self._announce(changes)

    @asynccontextmanager
    async def _write_alone(self) -> AsyncIterator[Changes]:
        """For a write that runs whole at driver level, its own transaction
        (worker_sql.alone, create_sql.alone: one hop on SQLite): its errors
        translated as `_write`'s, its changes announced once it returned
        (after its COMMIT)."""
        changes = Changes()
        with translated_errors():
            yield changes
        self._announce(changes)

    async def _read(self, fn: Callable[[Connection], _R]) -> _R:
        """Run `fn` (synchronous SQL) as one read: a single hop to a reader
        thread on SQLite, a greenlet on the async engine on PostgreSQL."""
        with translated_errors():
            return await self._db.read(fn)

    def _announce(self, changes: Changes) -> None:
        if changes.operations and self._planner_stats is not None:
            self._planner_stats.changed(len(changes.operations))
        if changes.operations:
            # The finished rows the seam's writes returned go to the hub with
            # the change: waiters and watchers in this process need no read.
            # Only done ones: nothing can supersede them but a delete, which
            # announces itself (a non-terminal row could be overtaken by a
            # later write announced first).
            written = {t.operation.id: t.operation for t in changes.transitions if t.operation.done}
            self.listener.operations_changed(
                changes.operations, written, changes.progressed - written.keys()
            )
        if changes.cancels:
            self.listener.cancel_requested(changes.cancels)
        if changes.work:
            self.listener.work_available(changes.work_due)
        if changes.transitions:
            for subscriber in self._subscribers:
                try:
                    subscriber.transitions_committed(changes.transitions)
                except Exception:  # an observer's bug must not fail a committed write
                    log.exception("a transition subscriber failed")

    # -- the API side -----------------------------------------------------
    async def create(self, job: NewJob, fingerprint: str) -> tuple[Operation, bool]:
        """Concurrent creates share a transaction (group commit): one commit
        acknowledges them all, and each is durable before its caller returns.
        Not `_shielded`: the group commit's own task runs the transaction, so
        a caller that leaves cannot cut it short (and `close` waits for it:
        the flush is tracked)."""
        return await self._creates.submit((job, fingerprint))

    async def _create_batch(
        self, items: list[tuple[NewJob, str]]
    ) -> Sequence[tuple[Operation, bool] | BaseException]:
        try:
            if self._insert_alone is not None and cannot_repeat(items):
                # SQLite: the INSERT is the whole transaction, in one hop.
                async with self._write_alone() as changes:
                    await self._insert_alone.insert(items)
                    return inserted(changes, items)
            if self._insert_one is not None and cannot_repeat(items):
                # PostgreSQL: ONE statement in autocommit, its NOTIFY in it.
                async with self._write_alone() as changes:
                    await self._insert_one.insert(items)
                    return inserted(changes, items)
            one = self._insert_one
            plan = fresh_plan(items, whole=False) if one is not None else None
            if one is not None and plan is not None:
                # PostgreSQL, with request_ids or dedupe keys: as ONE
                # statement too, unless one repeats a stored one.
                async with self._write_alone() as changes:
                    fresh = await create_fresh(one, changes, items, plan)
                if fresh is not None:
                    return fresh
            async with self._write() as (conn, changes):
                return await create_many(conn, changes, items, self._create_sql)
        except IntegrityError:
            # A concurrent Submit in another process won an insert (same
            # request_id or dedupe key): redo them one at a time, so that
            # each reads the winner instead.
            return [await self._create_alone(job, fp) for job, fp in items]

    async def create_claimed(
        self, job: NewJob, fingerprint: str, hand_off: HandOff
    ) -> tuple[Operation, bool]:
        """As `create`, in a group commit of hand-offs; `hand_off.stored` is
        called from the flush, after its commit, so that a caller who leaves
        meanwhile strands no claimed job."""
        return await self._hand_offs.submit((job, fingerprint, hand_off))

    async def _hand_off_batch(
        self, items: list[HandedOff]
    ) -> list[tuple[Operation, bool] | BaseException]:
        """Never raises: each member's outcome (isolated as a group commit
        isolates them), and each hand-off told of it once."""
        results = await flush_isolated(self._hand_off_flush, items, _database_down)
        for (_, _, hand_off), result in zip(items, results, strict=True):
            claim = None
            if not isinstance(result, BaseException):
                operation, created = result
                if created and operation.state is State.RUNNING:
                    claim = Claim(operation, hand_off.lease_token)
            try:
                hand_off.stored(claim)
            except Exception:  # the pool's bug must not fail a committed Submit
                log.exception("starting a handed-off job failed; its lease will expire")
        return results

    async def _hand_off_flush(
        self, items: list[HandedOff]
    ) -> list[tuple[Operation, bool] | BaseException]:
        try:
            plain = [(job, fp) for job, fp, _ in items]
            if self._insert_alone is not None and cannot_repeat(plain):
                # SQLite: the whole transaction in one hop, as `_create_batch`.
                async with self._write_alone() as changes:
                    handed = await self._insert_alone.insert_claimed(items)
                    return list(claimed_inserted(changes, items, handed))
            async with self._write() as (conn, changes):
                return await create_claimed(conn, changes, items, self._create_sql)
        except IntegrityError:
            # Lost a race with another process's insert (request_id, dedupe
            # key): one at a time, reading the winner; stored queued.
            return [await self._create_alone(job, fp) for job, fp, _ in items]

    @_shielded
    async def create_all(
        self, items: Sequence[tuple[NewJob, str]]
    ) -> Sequence[tuple[Operation, bool]]:
        """BatchSubmit's creates, in one transaction of their own: all are
        stored or none. A refused member (a reused request_id) rolls the
        whole batch back and is raised, naming its index."""
        # Nothing to look up or refuse (no request_id, no dedupe key): the
        # INSERT of them all is the whole transaction, as in `_create_batch`:
        # one hop on SQLite, ONE statement on PostgreSQL; all rows or none.
        plain = self._insert_alone or self._insert_one
        if plain is not None and (not items or not cannot_repeat(items)):
            plain = None
        # PostgreSQL, with request_ids or dedupe keys: ONE statement as well
        # when none repeats a stored one (a retried batch reads its rows).
        one = self._insert_one if items and plain is None else None
        plan = fresh_plan(items, whole=True) if one is not None else None
        for _ in range(3):
            try:
                if plain is not None:
                    async with self._write_alone() as changes:
                        await plain.insert(items)
                        return inserted(changes, items)
                if one is not None and plan is not None:
                    async with self._write_alone() as changes:
                        fresh = await create_fresh(one, changes, items, plan)
                    if fresh is not None:
                        # A plan for a whole batch has no refused member.
                        return cast(list[tuple[Operation, bool]], fresh)
                async with self._write() as (conn, changes):
                    results = await create_many(conn, changes, items, self._create_sql)
                    stored: list[tuple[Operation, bool]] = []
                    for index, result in enumerate(results):
                        if isinstance(result, BaseException):
                            raise refused_member(index, result)
                        stored.append(result)
                    return stored
            except IntegrityError:
                # A concurrent Submit won an insert: again, reading the winner.
                log.debug("a batch of %d lost a race; trying again", len(items))
        raise database_unavailable()

    async def find_repeats(
        self, items: Sequence[tuple[NewJob, str]]
    ) -> Sequence[Operation | BaseException | None]:
        if not any(job.request_id or job.dedupe_key for job, _ in items):
            return [None] * len(items)
        return await self._read(functools.partial(stored_repeats, items=items))

    async def _create_alone(
        self, job: NewJob, fingerprint: str
    ) -> tuple[Operation, bool] | BaseException:
        for _ in range(3):
            try:
                async with self._write() as (conn, changes):
                    return await create_one(conn, changes, job, fingerprint, self._create_sql)
            except IntegrityError:
                log.debug("create of %s lost a race; reading the winner", job.id)
            except Exception as error:
                return error
        return database_unavailable()

    async def get(self, op_id: str, owner: str | None, now: datetime) -> Operation:
        return cast(Operation, await self.get_or_kept(op_id, owner, now, None))

    async def get_or_kept(
        self,
        op_id: str,
        owner: str | None,
        now: datetime,
        kept: KeptAnswers[_K] | None,
    ) -> Operation | _K:
        params = {"id": op_id, "owner": owner} if owner is not None else {"id": op_id}
        inline, direct = self._db.inline, self._db.direct
        if inline is None and direct is None:
            return _found(await self._get_read(params, op_id), op_id, now)
        get_row, get_tombstone = self._get_prepared[owner is not None]
        reader = inline or direct
        assert reader is not None
        # A primary-key read: on SQLite on this thread (each read below is
        # synchronous there), on PostgreSQL on raw asyncpg. Nothing to cancel
        # or undo half-way: no task, no shield.
        with translated_errors():
            if kept is not None and (inline is not None or kept.version(op_id) is not None):
                # The version alone first: an unchanged one is answered from
                # `kept` without reading the whole row. Always on SQLite; on
                # PostgreSQL where an answer is kept for the operation (the
                # narrow row costs less on both ends of the round trip; a
                # changed version costs a second one).
                version_read = self._version_prepared[owner is not None]
                head = (
                    inline.first_raw(version_read, params)
                    if inline is not None
                    else await reader.first_raw(version_read, params)
                )
                if head is None:
                    return await self._tombstone_found(get_tombstone, params, op_id, now)
                answer = kept.known(op_id, head[0])
                if answer is not None:
                    _check_unexpired(reader.column(version_read, head, 1), op_id, now)
                    return answer
            raw = (
                inline.first_raw(get_row, params)
                if inline is not None
                else await reader.first_raw(get_row, params)
            )
            if raw is None:
                return await self._tombstone_found(get_tombstone, params, op_id, now)
            if kept is not None:
                # The caller's answer for this version, if it keeps one: the
                # row's other columns are not even processed.
                answer = kept.known(op_id, raw[self._version_at])
                if answer is not None:
                    _check_unexpired(reader.column(get_row, raw, self._expire_at), op_id, now)
                    return answer
            row = reader.processed(get_row, raw)
            delivery = None
            if row.notify_url is not None and State(row.state).terminal:
                found = (
                    inline.first(self._delivery_prepared, params)
                    if inline is not None
                    else await reader.first(self._delivery_prepared, params)
                )
                delivery = None if found is None else to_delivery(found)
        return _found((row, delivery), op_id, now)

    async def _tombstone_found(
        self, get_tombstone: PreparedRead, params: dict[str, str], op_id: str, now: datetime
    ) -> Operation:
        """No row: EXPIRED if its tombstone is there, else NOT_FOUND (raised)."""
        inline, direct = self._db.inline, self._db.direct
        if inline is not None:
            tombstone = inline.first_raw(get_tombstone, params)
        else:
            assert direct is not None
            tombstone = await direct.first_raw(get_tombstone, params)
        return _found(tombstone is not None, op_id, now)

    @_shielded
    async def _get_read(self, params: dict[str, str], op_id: str) -> Any:
        get_row, get_tombstone = (
            (GET_OPERATION, GET_TOMBSTONE)
            if "owner" in params
            else (GET_ANY_OPERATION, GET_ANY_TOMBSTONE)
        )

        def read(conn: Connection) -> Any:
            row = conn.execute(get_row, params).first()
            if row is not None:
                if row.notify_url is not None and State(row.state).terminal:
                    return row, read_deliveries(conn, [op_id]).get(op_id)
                return row, None
            return conn.execute(get_tombstone, params).first() is not None

        return await self._read(read)

    @_shielded
    async def get_many(self, ids: Collection[str], now: datetime) -> dict[str, Operation]:
        wanted = list(ids)
        if not wanted:
            return {}

        def read(conn: Connection) -> tuple[list[Any], dict[str, Delivery]]:
            rows: list[Any] = []
            # Bounded IN lists: SQLite and asyncpg cap bound parameters.
            for start in range(0, len(wanted), _MANY_CHUNK):
                chunk = wanted[start : start + _MANY_CHUNK]
                rows.extend(conn.execute(GET_MANY_OPERATIONS, {"ids": chunk}).all())
            notified = [r.id for r in rows if r.notify_url is not None and State(r.state).terminal]
            return rows, read_deliveries(conn, notified) if notified else {}

        direct = self._db.direct
        if direct is not None:
            many_rows, many_deliveries = self._many_prepared
            with translated_errors():
                rows = await direct.all(many_rows, {"ids": wanted})
                notified = [
                    r.id for r in rows if r.notify_url is not None and State(r.state).terminal
                ]
                deliveries = {}
                if notified:
                    for d in await direct.all(many_deliveries, {"ids": notified}):
                        deliveries[d.operation_id] = to_delivery(d)
        else:
            rows, deliveries = await self._read(read)
        found: dict[str, Operation] = {}
        for row in rows:
            op = to_operation(row)
            if past_expiry(op.expire_time, now):
                continue
            delivery = deliveries.get(op.id)
            found[op.id] = op if delivery is None else replace(op, delivery=delivery)
        return found

    async def _missing(self, conn: AsyncConnection, op_id: str, owner: str | None) -> NotFound:
        if owner is None:
            tombstone = (await conn.execute(GET_ANY_TOMBSTONE, {"id": op_id})).first()
        else:
            tombstone = (await conn.execute(GET_TOMBSTONE, {"id": op_id, "owner": owner})).first()
        return expired(op_id) if tombstone is not None else not_found(op_id)

    @_shielded
    async def list(
        self,
        owner: str | None,
        query: Filter,
        after: Cursor | None,
        limit: int,
        now: datetime,
        *,
        oldest_first: bool = False,
    ) -> Sequence[Operation]:
        statement = list_query(owner, query, after, limit, now, oldest_first)

        def read(conn: Connection) -> tuple[Sequence[Any], dict[str, Delivery]]:
            rows = conn.execute(statement).all()
            notified = [r.id for r in rows if r.notify_url is not None]
            return rows, read_deliveries(conn, notified) if notified else {}

        rows, deliveries = await self._read(read)
        ops = [to_operation(r) for r in rows]
        return [
            replace(op, delivery=deliveries[op.id]) if op.id in deliveries else op for op in ops
        ]

    @_shielded
    async def cancel(
        self, op_id: str, owner: str | None, now: datetime, retention: Callable[[str], timedelta]
    ) -> Operation:
        async with self._write() as (conn, changes):
            row = (
                await conn.execute(
                    select(OPS).where(T.id == op_id, *owned_by(owner)).with_for_update()
                )
            ).first()
            if row is None:
                raise await self._missing(conn, op_id, owner)
            op = to_operation(row)
            _check_unexpired(op.expire_time, op_id, now)
            if op.done or op.cancel_requested:
                return op
            source = op.state
            values: dict[str, Any] = {"cancel_requested": True}
            if op.state is State.QUEUED:
                check_move(op.state, State.CANCELLED)
                values |= terminal_values(
                    State.CANCELLED, now, retention(op.job_type), CANCELLED_ERROR
                )
            else:
                changes.cancels.add(op_id)
            row = (
                await conn.execute(
                    update(OPS)
                    .where(T.id == op_id)
                    .values(**values, update_time=now, version=T.version + 1)
                    .returning(*T)
                )
            ).one()
            changes.operations.add(op_id)
            after = to_operation(row)
            if after.done:
                await record_transitions(conn, changes, [Transition(after, source, EndedBy.CANCEL)])
        return after

    @_shielded
    async def delete(self, op_id: str, owner: str, now: datetime) -> None:
        async with self._write() as (conn, changes):
            row = (
                await conn.execute(
                    select(T.state, T.expire_time)
                    .where(T.id == op_id, T.owner == owner)
                    .with_for_update()
                )
            ).first()
            if row is None:
                raise await self._missing(conn, op_id, owner)
            _check_unexpired(row.expire_time, op_id, now)
            if State(row.state).active:
                raise FailedPrecondition(
                    "The operation is not done; cancel it first or wait for it to finish.",
                    reason="OPERATION_NOT_DONE",
                    metadata={"name": f"operations/{op_id}", "state": row.state},
                )
            await delete_rows(conn, [op_id])
            changes.operations.add(op_id)

    # -- the worker side --------------------------------------------------
    def claim(
        self,
        worker_id: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        job_types: Sequence[str],
    ) -> Awaitable[Sequence[Claim]]:
        """Claim up to `limit` due jobs of the given types (those this worker
        has handlers for: during a rolling deploy, old workers leave new types
        to new workers). Not `_shielded`: it runs in the worker writes' group
        commit (with the finishing writes waiting then), whose task a caller
        that leaves cannot cut short. Queued there at the call, so that a
        pool awaiting it in a task of its own takes the place in the next
        flush it would have taken awaiting it at once (beside the finishes
        queued by then)."""
        ask = ClaimAsk(now, now + lease, limit, tuple(job_types), worker_id, secrets.token_hex(16))
        return self._claimed(ask, self._worker_writes.enqueue(ask))

    async def _claimed(
        self, ask: ClaimAsk, written: asyncio.Future[WorkerResult]
    ) -> Sequence[Claim]:
        rows = await written
        assert isinstance(rows, list)
        claims = [Claim(to_operation(r), ask.token) for r in rows]
        claims.sort(key=lambda c: (-c.operation.priority, c.operation.run_after))
        return claims

    @_shielded
    async def heartbeat(
        self, claim: Claim, now: datetime, lease: timedelta, progress: Progress | None
    ) -> Heartbeat:
        reported = (
            None if progress is None else (progress.completed, progress.total, progress.stage)
        )
        beat = BeatWrite(claim.operation.id, claim.lease_token, now + lease, reported, now)
        cancel: bool | None
        if self._worker_one is not None:
            # One statement in autocommit, its NOTIFY (of the progress) in it.
            async with self._write_alone() as changes:
                cancel = await self._worker_one.heartbeat(beat)
                _beats_changed((beat,), (cancel,), changes)
        else:
            # SQLite: in the worker writes' next transaction, beside the
            # finishes and claims of the pool and the other attempts' beats.
            written = await self._worker_writes.submit(beat)
            assert written is None or isinstance(written, bool)
            cancel = written
        if cancel is None:
            return Heartbeat(held=False, cancel_requested=False)
        return Heartbeat(held=True, cancel_requested=cancel)

    @_shielded
    async def renew(
        self, claims: Sequence[Claim], now: datetime, lease: timedelta
    ) -> Sequence[Heartbeat]:
        """Renew every lease of `claims` in one statement; one Heartbeat per
        claim, in order (not held: its lease is gone)."""
        if not claims:
            return []
        ids = sorted({c.operation.id for c in claims})
        tokens = sorted({c.lease_token for c in claims})
        if self._worker_one is not None:
            # One statement in autocommit: no BEGIN or COMMIT round trip.
            with translated_errors():
                renewed = await self._worker_one.renew(ids, tokens, now + lease)
        else:
            params = {"ids": ids, "tokens": tokens, "expires": now + lease}
            async with self._write() as (conn, _changes):
                rows = (await conn.execute(RENEW_LEASES, params)).all()
            renewed = [(r.id, r.lease_token, r.cancel_requested) for r in rows]
        held = {(op_id, token): bool(cancel) for op_id, token, cancel in renewed}
        beats: list[Heartbeat] = []
        for claim in claims:
            cancel = held.get((claim.operation.id, claim.lease_token))
            beats.append(Heartbeat(held=cancel is not None, cancel_requested=bool(cancel)))
        return beats

    async def succeed(
        self,
        claim: Claim,
        now: datetime,
        result: Payload,
        retention: timedelta,
        *,
        progress: Progress | None = None,
    ) -> Operation | None:
        values = terminal_values(State.SUCCEEDED, now, retention, None)
        values |= {"result_type": result.type_url, "result_value": result.value}
        values |= progress_values(progress)
        return await self._finish(claim, now, State.SUCCEEDED, values, None, None)

    async def fail(
        self,
        claim: Claim,
        now: datetime,
        error: PublicError,
        internal_error: str | None,
        retry_at: datetime | None,
        retention: timedelta,
        *,
        progress: Progress | None = None,
        final_error: PublicError | None = None,
    ) -> Operation | None:
        """`error` is this attempt's; `final_error`, if given, is what the
        operation fails with (attempts exhausted), else the same."""
        values: dict[str, Any] = {
            "last_attempt_error": error_to_json(error),
            **progress_values(progress),
        }
        if retry_at is not None:
            values |= {"state": State.QUEUED.value, "run_after": retry_at}
            target = State.QUEUED
        else:
            values |= terminal_values(State.FAILED, now, retention, final_error or error)
            target = State.FAILED
        return await self._finish(claim, now, target, values, error, internal_error)

    async def cancel_running(
        self,
        claim: Claim,
        now: datetime,
        retention: timedelta,
        *,
        progress: Progress | None = None,
    ) -> Operation | None:
        values = terminal_values(
            State.CANCELLED, now, retention, CANCELLED_ERROR
        ) | progress_values(progress)
        return await self._finish(claim, now, State.CANCELLED, values, CANCELLED_ERROR, None)

    async def release(self, claim: Claim, now: datetime) -> Operation | None:
        """Hand a running job back at once (graceful drain): the attempt does
        not count, and any worker may claim it now."""
        values = {"state": State.QUEUED.value, "run_after": now, "attempt": T.attempt - 1}
        return await self._finish(claim, now, State.QUEUED, values, None, None, outcome="RELEASED")

    async def _finish(
        self,
        claim: Claim,
        now: datetime,
        target: State,
        values: dict[str, Any],
        error: PublicError | None,
        internal_error: str | None,
        outcome: str | None = None,
    ) -> Operation | None:
        """Not shielded per call (succeed, fail, cancel_running, release):
        the group commit's flush runs in a task of its own, which `close`
        waits for, so a caller that leaves abandons no transaction; one task
        per batch instead of one per job."""
        check_move(State.RUNNING, target)
        finish = Finish(claim, now, target, values, error, internal_error, outcome)
        written = await self._worker_writes.submit(finish)
        assert written is None or isinstance(written, Operation)
        return written

    async def _worker_batch(
        self, items: Sequence[WorkerWrite]
    ) -> Sequence[WorkerResult | BaseException]:
        """Finishing writes of concurrent attempts share one transaction (one
        commit), like Submits, each fenced by its own lease token; the claims
        asked for meanwhile run after them (on SQLite in the same
        transaction, its one writer taken once). On SQLite the whole
        transaction is one hop to the driver's thread, unless a webhook's
        outbox row may be written with it; on PostgreSQL each is one
        statement of its own (`_worker_batch_apart`)."""
        finishes = [item for item in items if isinstance(item, Finish)]
        asks = [item for item in items if isinstance(item, ClaimAsk)]
        beats = [item for item in items if isinstance(item, BeatWrite)]
        if self._worker_one is not None:
            assert not beats, "PostgreSQL's heartbeats are statements of their own"
            return await self._worker_batch_apart(self._worker_one, items, finishes, asks)
        beaten: Sequence[bool | None] = []
        if self._worker_alone is not None and not writes_outbox(finishes):
            plan = FinishPlan(finishes)
            async with self._write_alone() as changes:
                rows, claimed, beaten = await self._worker_alone.write(plan.rounds(), asks, beats)
                try:
                    finished = finished_alone(plan, rows, changes)
                except Exception as error:
                    # Committed: run again in halves, its finishes would be
                    # refused as stale and its claims would claim again.
                    raise _AfterCommit() from error
                for raws in claimed:
                    changes.operations.update(r.id for r in raws)
                _beats_changed(beats, beaten, changes)
        else:
            async with self._write() as (conn, changes):
                if beats:
                    assert self._worker_alone is not None, "heartbeats batch on SQLite only"
                    beaten = await self._worker_alone.beat_within(conn, beats)
                    _beats_changed(beats, beaten, changes)
                finished = await finish_many(conn, changes, finishes, self._worker_sql)
                claimed = []
                for ask in asks:
                    raws = await self._worker_sql.claim(conn, ask)
                    changes.operations.update(r.id for r in raws)
                    claimed.append(raws)
        done, taken, beat = iter(finished), iter(claimed), iter(beaten)
        return [
            next(done) if isinstance(item, Finish) else next(beat) if isinstance(item, BeatWrite)
            else next(taken)
            for item in items
        ]  # fmt: skip

    async def _worker_batch_apart(
        self,
        one: worker_sql.WorkerSqlOne,
        items: Sequence[WorkerWrite],
        finishes: Sequence[Finish],
        asks: Sequence[ClaimAsk],
    ) -> Sequence[WorkerResult | BaseException]:
        """PostgreSQL: each write one statement in autocommit with its
        NOTIFY (one round trip, a transaction of its own): the batch's
        finishing writes and its first claim together as ONE statement (one
        commit), any further claim alone. (Not together when a finish queues
        a job again that the claim could take: one statement has one
        snapshot, so the claim would not see it; the finishes go first
        then, as they do in a shared transaction.) A claim never fails the finishes
        of its batch: if the statement they share raises for any reason but
        the database being down (a statement or lock timeout, a bug), it has
        written nothing, and they run again apart, each claim failing alone.
        A finishing write that raises on its own has written nothing too,
        and the group commit splits its batch as for any transaction."""
        plan = FinishPlan(finishes)
        rounds = plan.rounds()
        together = (
            len(rounds) == 1
            and bool(asks)
            and not writes_outbox(finishes)
            and not _queues_for(finishes, asks[0])
        )
        finished: Sequence[Operation | None] = []
        claimed: builtins.list[builtins.list[Any] | BaseException] = []
        if together:
            try:
                async with self._write_alone() as changes:
                    rows, raws = await one.finish_and_claim(rounds[0], asks[0])
                    try:
                        finished = finished_alone(plan, [rows], changes)
                    except Exception as error:
                        raise _AfterCommit() from error
                    changes.operations.update(r.id for r in raws)
                    claimed.append(raws)
            except worker_sql.ReadBackFailed as error:
                # Committed: run again, its finishes would be refused as
                # stale and its claim would claim again.
                raise _AfterCommit() from error
            except Exception as error:
                if _database_down(error):
                    raise
                log.warning("a claim and finishing writes failed together; apart now: %s", error)
                together = False
        if not together and finishes:
            finished = await self._finish_apart(one, plan, rounds, finishes)
        for ask in asks[len(claimed) :]:
            try:
                async with self._write_alone() as changes:
                    raws = await one.claim(ask)
                    changes.operations.update(r.id for r in raws)
            except Exception as error:
                claimed.append(error)
            else:
                claimed.append(raws)
        done, taken = iter(finished), iter(claimed)
        return [next(done) if isinstance(item, Finish) else next(taken) for item in items]

    async def _finish_apart(
        self,
        one: worker_sql.WorkerSqlOne,
        plan: FinishPlan,
        rounds: Sequence[Sequence[worker_sql.FinishWrite]],
        finishes: Sequence[Finish],
    ) -> Sequence[Operation | None]:
        if len(rounds) > 1 or writes_outbox(finishes):
            # Two claims of one operation in the batch (two statements), or
            # an outbox row to write with the ends: the store's transaction.
            async with self._write() as (conn, changes):
                return await finish_many(conn, changes, finishes, self._worker_sql)
        async with self._write_alone() as changes:
            try:
                rows = [await one.finish(rounds[0])]
            except worker_sql.ReadBackFailed as error:
                raise _AfterCommit() from error
            try:
                return finished_alone(plan, rows, changes)
            except Exception as error:
                raise _AfterCommit() from error

    @_shielded
    async def operation_exists(self, op_id: str) -> bool:
        """Whether `op_id` is stored, whoever owns it (operator views only)."""
        query = select(T.id).where(T.id == op_id)
        return bool(await self._read(lambda conn: conn.execute(query).first()))

    @_shielded
    async def attempts(self, op_id: str) -> Sequence[AttemptRecord]:
        a = ATTEMPTS.c
        statement = select(ATTEMPTS).where(a.operation_id == op_id).order_by(a.id)
        rows = await self._read(lambda conn: conn.execute(statement).all())
        return [
            AttemptRecord(
                r.operation_id,
                r.number,
                r.worker_id,
                r.start_time,
                r.end_time,
                r.outcome,
                error_from_json(r.error),
                r.internal_error,
            )
            for r in rows
        ]

    # -- housekeeping -----------------------------------------------------
    @_shielded
    async def rescue(self, now: datetime, limit: int, policy: Callable[[str], JobPolicy]) -> int:
        """Take back jobs whose lease expired (their worker died or stalled):
        cancelled if a cancel was asked, otherwise by the job type's retry
        policy like any failed attempt: queued again after its backoff
        (transition f), or failed once no attempts are left. Their attempt is
        recorded as LEASE_EXPIRED, and the old lease token no longer fences."""
        async with self._write() as (conn, changes):
            rows = (
                await conn.execute(
                    select(OPS)
                    .where(T.state == State.RUNNING.value, T.lease_expires_at < now)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            moves: list[Transition] = []
            for row in rows:
                op = to_operation(row)
                values = rescued_values(op, now, policy(op.job_type))
                written = (
                    await conn.execute(
                        update(OPS)
                        .where(T.id == op.id)
                        .values(
                            **values,
                            lease_owner=None,
                            lease_token=None,
                            lease_expires_at=None,
                            update_time=now,
                            version=T.version + 1,
                        )
                        .returning(*T)
                    )
                ).one()
                await conn.execute(
                    update(ATTEMPTS)
                    .where(
                        ATTEMPTS.c.operation_id == op.id,
                        ATTEMPTS.c.lease_token == row.lease_token,
                    )
                    .values(
                        end_time=now, outcome="LEASE_EXPIRED", error=error_to_json(LEASE_EXPIRED)
                    )
                )
                after = to_operation(written)
                moves.append(Transition(after, op.state, EndedBy.RESCUE, op.lease_owner))
                changes.operations.add(op.id)
                if after.state is State.QUEUED:
                    changes.work_at(after.run_after)
            await record_transitions(conn, changes, moves)
        return len(rows)

    @_shielded
    async def expire(self, now: datetime, batch: int) -> int:
        """Delete up to `batch` expired operations, leaving tombstones; and
        tombstones past TOMBSTONE_RETENTION (then the name answers as unknown)."""
        async with self._write() as (conn, changes):
            old = (
                select(EXPIRED.c.id)
                .where(EXPIRED.c.expire_time <= now - TOMBSTONE_RETENTION)
                .limit(batch)
            )
            await conn.execute(delete(EXPIRED).where(EXPIRED.c.id.in_(old)))
            rows = (
                await conn.execute(
                    select(T.id, T.owner, T.expire_time)
                    .where(T.expire_time <= now)
                    .limit(batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not rows:
                return 0
            await conn.execute(
                insert(EXPIRED),
                [{"id": r.id, "owner": r.owner, "expire_time": r.expire_time} for r in rows],
            )
            await delete_rows(conn, [r.id for r in rows])
            changes.operations.update(r.id for r in rows)
        return len(rows)

    # -- webhook deliveries (the outbox) ---------------------------------
    @_shielded
    async def claim_deliveries(
        self, now: datetime, limit: int, lease: timedelta
    ) -> Sequence[DeliveryClaim]:
        """Up to `limit` due deliveries, each held by this caller alone until
        `lease` runs out (a dispatcher that dies lets another take it then)."""
        token = secrets.token_hex(16)
        async with self._write() as (conn, _changes):
            return await claim_due(conn, now, limit, lease, token)

    @_shielded
    async def finish_delivery(
        self,
        claim: DeliveryClaim,
        now: datetime,
        *,
        counted: bool,
        state: DeliveryState,
        status: int | None = None,
        error: str | None = None,
        next_attempt_time: datetime | None = None,
    ) -> Delivery | None:
        async with self._write() as (conn, changes):
            written = await record_attempt(
                conn,
                claim,
                now,
                counted=counted,
                state=state,
                status=status,
                error=error,
                next_attempt_time=next_attempt_time,
            )
            if written is not None:
                changes.operations.add(claim.delivery.operation_id)
        return written

    @_shielded
    async def deliveries(self, state: DeliveryState | None, limit: int) -> Sequence[Delivery]:
        return await self._read(lambda conn: list_deliveries(conn, state, limit))

    @_shielded
    async def queue_stats(self, now: datetime) -> Sequence[QueueStats]:
        due = T.run_after <= now
        stmt = (
            select(
                T.job_type,
                func.count().label("queued"),
                func.count(case((due, 1))).label("due"),
                func.min(case((due, T.run_after))).label("oldest_due"),
            )
            .where(T.state == State.QUEUED.value)
            .group_by(T.job_type)
        )
        rows = await self._read(lambda conn: conn.execute(stmt).all())
        return [QueueStats(r.job_type, r.queued, r.due, r.oldest_due) for r in rows]

    # -- the console and worker presence ------------------------------------
    @_shielded
    async def overview(
        self, owner: str | None, since: datetime, now: datetime
    ) -> Sequence[JobTypeOverview]:
        statement = presence.overview_query(owner, since, now)
        rows = await self._read(lambda conn: conn.execute(statement).all())
        return [presence.to_overview(r) for r in rows]

    @_shielded
    async def announce_worker(self, worker: WorkerRecord) -> None:
        async with self._write() as (conn, _changes):
            await conn.execute(presence.remove_worker(worker.id))
            await conn.execute(insert(presence.WORKERS).values(presence.worker_values(worker)))

    @_shielded
    async def worker_heartbeat(self, worker_id: str, now: datetime, running: int) -> bool:
        async with self._write() as (conn, _changes):
            result = await conn.execute(presence.heartbeat_worker(worker_id, now, running))
        return bool(result.rowcount)

    @_shielded
    async def remove_worker(self, worker_id: str) -> None:
        async with self._write() as (conn, _changes):
            await conn.execute(presence.remove_worker(worker_id))

    @_shielded
    async def remove_stale_workers(self, before: datetime) -> int:
        async with self._write() as (conn, _changes):
            result = await conn.execute(presence.remove_stale(before))
        return int(result.rowcount or 0)

    @_shielded
    async def workers(self) -> Sequence[WorkerRecord]:
        rows = await self._read(lambda conn: conn.execute(presence.LIST_WORKERS).all())
        return [presence.to_worker(r) for r in rows]

    @_shielded
    async def server_key(self, name: str) -> bytes:
        """The secret `name` that every process on this database shares: made
        by the first process that asks, read by the others."""
        k = SERVER_KEYS.c
        query = select(k.value).where(k.name == name)
        for _ in range(3):
            found = await self._read(lambda conn: conn.execute(query).scalar())
            if found is not None:
                return bytes(found)
            try:
                async with self._write() as (conn, _changes):
                    await conn.execute(
                        insert(SERVER_KEYS).values(name=name, value=secrets.token_bytes(32))
                    )
            except IntegrityError:
                log.debug("another process made the %s key first", name)
        raise database_unavailable()

    @_shielded
    async def usage(self) -> Usage:
        rows = await self._read(lambda conn: conn.execute(USAGE).all())
        active: dict[str, int] = {}
        queued = queued_bytes = 0
        for row in rows:
            active[row.owner] = active.get(row.owner, 0) + row.n
            if row.state == State.QUEUED.value:
                queued += row.n
                queued_bytes += int(row.size)
        return Usage(active, queued, queued_bytes)

    @_shielded
    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute(text("SELECT 1")).all())

    async def close(self) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=5)
        if self._planner_stats is not None:
            await self._planner_stats.close()
        await self._db.dispose()
