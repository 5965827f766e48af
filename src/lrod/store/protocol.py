"""The storage port. Everything above the store talks to this Protocol only."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol, TypeVar

from lrod.domain.filters import Filter
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.paging import Cursor
from lrod.domain.retry import JobPolicy
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.domain.webhooks import Delivery, DeliveryState

# What a caller of OperationStore.get_or_kept keeps per operation version.
K = TypeVar("K")
K_co = TypeVar("K_co", covariant=True)


class KeptAnswers(Protocol[K_co]):
    """What a caller of OperationStore.get_or_kept keeps per operation
    version (the api's serialized Operation)."""

    def known(self, op_id: str, version: int) -> K_co | None:
        """The answer kept for this version of the operation, if any."""
        ...

    def version(self, op_id: str) -> int | None:
        """A version of the operation an answer is kept for, if any: where
        the store reads the stored version alone first (PostgreSQL: one
        round trip more when it changed), it does so only then."""
        ...


class ChangeListener(Protocol):
    """Told after each commit what changed (the hub implements it)."""

    def operations_changed(
        self,
        ids: Iterable[str],
        written: Mapping[str, Operation] | None = None,
        progressed: Container[str] = (),
    ) -> None:
        """`written`: the rows as this process's write returned them;
        `progressed`: ids whose only change was progress."""
        ...

    def cancel_requested(self, ids: Iterable[str]) -> None: ...
    def work_available(self, due: datetime | None = None) -> None:
        """Work is ready now, or will be at `due`."""
        ...

    def everything_changed(self) -> None:
        """Something may have changed anywhere (a lost or coarse notification
        from another process): everyone re-reads."""
        ...


class ChangeFeed(Protocol):
    """What tells a process of other processes' writes and feeds them into
    its ChangeListener: LISTEN/NOTIFY on PostgreSQL, a data_version watch on
    SQLite (`OperationStore.notification_listener`)."""

    def start(self) -> None: ...
    async def stop(self) -> None: ...


class EndedBy(StrEnum):
    """Which write site moved the operation through the seam."""

    WORKER = "worker"  # the attempt's finishing write
    CANCEL = "cancel"  # CancelOperation of a queued operation
    RESCUE = "rescue"  # the lease expired: the worker died or stalled


@dataclass(frozen=True)
class Transition:
    """One move through the seam where jobs end (store/endings.py): a
    terminal move, a retry (RUNNING -> QUEUED) or a release. `operation` is
    the row as written; `source` the state it left."""

    operation: Operation
    source: State
    by: EndedBy
    worker: str | None = None  # the lease owner, for RUNNING sources

    @property
    def retried(self) -> bool:
        return self.source is State.RUNNING and self.operation.state is State.QUEUED


class TransitionSubscriber(Protocol):
    """Told after each commit of the transitions it made, in order (metrics,
    logs). Runs on the event loop: keep it quick, never raise."""

    def transitions_committed(self, transitions: Sequence[Transition]) -> None: ...


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: the operation and the lease token that fences
    every write of this attempt."""

    operation: Operation
    lease_token: str


class HandOff(Protocol):
    """A free slot of this process's worker pool, held for one Submit
    (WorkerPool.reserve): the lease a claim would take, and where the job
    goes once stored claimed under it."""

    @property
    def worker_id(self) -> str: ...
    @property
    def lease_token(self) -> str: ...
    @property
    def now(self) -> datetime:
        """The claim's time: start_time, update_time, the attempt's start."""
        ...

    @property
    def lease_expires_at(self) -> datetime: ...
    @property
    def job_types(self) -> Sequence[str]:
        """The types the pool serves: a queued job of one of them, due and
        of at least this job's priority, keeps the Submit from being
        handed off."""
        ...

    def stored(self, claim: Claim | None) -> None:
        """Called once, after the commit (or the failure) of the Submit's
        transaction: its Claim if the job was stored RUNNING under this
        lease, else None (a repeat, a refusal, an error, or queued work the
        job must not overtake), and the slot is free again."""
        ...


@dataclass(frozen=True)
class DeliveryClaim:
    """A webhook delivery a dispatcher holds, with its operation (done, so it
    no longer changes) and the token that fences this attempt's writes."""

    delivery: Delivery
    operation: Operation
    token: str


@dataclass(frozen=True)
class Heartbeat:
    held: bool
    cancel_requested: bool


@dataclass(frozen=True)
class AttemptRecord:
    operation_id: str
    number: int
    worker_id: str
    start_time: datetime
    end_time: datetime | None
    outcome: str
    error: PublicError | None
    internal_error: str | None


@dataclass(frozen=True)
class QueueStats:
    """Queued operations of one job type: all of them, those due now, and
    when the oldest due one became due (None if none is due)."""

    job_type: str
    queued: int
    due: int
    oldest_due: datetime | None


@dataclass(frozen=True)
class JobTypeOverview:
    """One job type in the console's overview: operations QUEUED and RUNNING
    now, those that finished (by state) since the window's start, and when
    the oldest due queued one became due (None if none is due)."""

    job_type: str
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    oldest_due: datetime | None = None

    @property
    def finished(self) -> int:
        return self.succeeded + self.failed + self.cancelled


@dataclass(frozen=True)
class WorkerRecord:
    """A worker process as it announced itself (worker/presence.py)."""

    id: str
    host: str
    pid: int
    slots: int
    running: int
    job_types: tuple[str, ...]
    started: datetime
    heartbeat: datetime


@dataclass(frozen=True)
class Usage:
    """What the quotas count, read from the database (so across every
    process on it): active operations by owner, and the QUEUED ones'
    number and input bytes."""

    active_by_owner: Mapping[str, int]
    queued: int
    queued_bytes: int


class OperationStore(Protocol):
    # How many claims a worker pool keeps outstanding at once (one
    # dialect's choice: lrod.store.dialect.claims_in_flight).
    claims_in_flight: int

    def notification_listener(self) -> ChangeFeed:
        """The feed of other processes' changes into this store's listener;
        the caller starts and stops it."""
        ...

    async def create(self, job: NewJob, fingerprint: str) -> tuple[Operation, bool]:
        """Store `job`, or return the operation it repeats (same request_id, or
        an active one with the same dedupe key); the flag says it was created."""
        ...

    async def create_claimed(
        self, job: NewJob, fingerprint: str, hand_off: HandOff
    ) -> tuple[Operation, bool]:
        """As `create`, but a new job is stored already claimed under
        `hand_off`'s lease (RUNNING, attempt 1 and its attempts row, as a
        claim writes them) in the same transaction, unless a due queued job
        of one of `hand_off.job_types` has at least its priority (then it is
        stored QUEUED, as by `create`). `hand_off.stored` is told after the
        commit, whether or not the caller still waits."""
        ...

    async def create_all(
        self, items: Sequence[tuple[NewJob, str]]
    ) -> Sequence[tuple[Operation, bool]]:
        """Store every job of a batch or none (as `create`, each in order); a
        refused member is raised with its index in the error's metadata."""
        ...

    async def find_repeats(
        self, items: Sequence[tuple[NewJob, str]]
    ) -> Sequence[Operation | BaseException | None]:
        """What `create` would answer for each (job, fingerprint) that repeats
        a stored one, storing nothing: the operation its request_id or active
        dedupe key names (AlreadyExists for a request_id used for another
        request), or None where a create would store a new operation. For
        a Submit refused by a quota: a retry still gets its operation."""
        ...

    # `owner` None: any owner (an admin's reads and cancels).
    async def get(self, op_id: str, owner: str | None, now: datetime) -> Operation: ...

    async def get_or_kept(
        self,
        op_id: str,
        owner: str | None,
        now: datetime,
        kept: KeptAnswers[K] | None,
    ) -> Operation | K:
        """As `get` (the same scope, NOT_FOUND and expiry), except that when
        `kept.known(op_id, version)` has something for the stored row's version,
        that is the answer, without building the Operation: a caller that
        keeps its answer per version (the api's serialized Operation) skips
        the conversion of an unchanged row. Every write bumps the version."""
        ...

    async def get_many(self, ids: Collection[str], now: datetime) -> dict[str, Operation]:
        """The stored, unexpired operations among `ids`, whoever owns them, in
        one read (the hub's wake-ups: one read for every operation a change
        named); a missing id is simply absent."""
        ...

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
        """Newest first, or oldest first (the console's sort)."""
        ...

    async def cancel(
        self, op_id: str, owner: str | None, now: datetime, retention: Callable[[str], timedelta]
    ) -> Operation:
        """Cancel a QUEUED operation at once, or mark a RUNNING one for its
        worker; a finished one is returned unchanged. `retention` gives the
        job type's retention."""
        ...

    async def delete(self, op_id: str, owner: str, now: datetime) -> None: ...

    def claim(
        self,
        worker_id: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        job_types: Sequence[str],
    ) -> Awaitable[Sequence[Claim]]:
        """Up to `limit` due jobs of `job_types`, claimed for `worker_id`.
        An `async def` serves; SqlStore queues the claim at the call."""
        ...

    async def heartbeat(
        self, claim: Claim, now: datetime, lease: timedelta, progress: Progress | None
    ) -> Heartbeat: ...

    async def renew(
        self, claims: Sequence[Claim], now: datetime, lease: timedelta
    ) -> Sequence[Heartbeat]:
        """Renew the leases of all `claims` at once (a worker pool's one
        heartbeat loop); one Heartbeat per claim, in order."""
        ...

    async def succeed(
        self,
        claim: Claim,
        now: datetime,
        result: Payload,
        retention: timedelta,
        *,
        progress: Progress | None = None,
    ) -> Operation | None:
        """Finish the attempt; every finishing write also stores the final
        progress, and all of them are fenced by the claim's lease token."""
        ...

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
    ) -> Operation | None: ...

    async def cancel_running(
        self,
        claim: Claim,
        now: datetime,
        retention: timedelta,
        *,
        progress: Progress | None = None,
    ) -> Operation | None: ...

    async def release(self, claim: Claim, now: datetime) -> Operation | None: ...

    async def rescue(self, now: datetime, limit: int, policy: Callable[[str], JobPolicy]) -> int:
        """Take back up to `limit` jobs whose lease expired, each by its job
        type's policy (the backoff and attempts the worker applies too)."""
        ...

    async def expire(self, now: datetime, batch: int) -> int: ...

    async def attempts(self, op_id: str) -> Sequence[AttemptRecord]: ...

    async def claim_deliveries(
        self, now: datetime, limit: int, lease: timedelta
    ) -> Sequence[DeliveryClaim]: ...

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
        """Record one attempt's end (`counted`), or hand the delivery back
        untried; fenced by the claim's token (None: the lease was lost)."""
        ...

    async def deliveries(self, state: DeliveryState | None, limit: int) -> Sequence[Delivery]:
        """Newest first, for operators."""
        ...

    async def queue_stats(self, now: datetime) -> Sequence[QueueStats]:
        """Per job type, for metrics: a read at scrape time."""
        ...

    async def overview(
        self, owner: str | None, since: datetime, now: datetime
    ) -> Sequence[JobTypeOverview]:
        """Per job type, for the console; `owner` None counts every owner's."""
        ...

    async def announce_worker(self, worker: WorkerRecord) -> None:
        """Insert or replace the worker's row."""
        ...

    async def worker_heartbeat(self, worker_id: str, now: datetime, running: int) -> bool:
        """Refresh the row; False if it is gone (cleaned up as stale)."""
        ...

    async def remove_worker(self, worker_id: str) -> None: ...

    async def remove_stale_workers(self, before: datetime) -> int:
        """Delete workers whose last heartbeat is older than `before`."""
        ...

    async def workers(self) -> Sequence[WorkerRecord]: ...

    async def server_key(self, name: str) -> bytes:
        """A 32-byte secret shared by every process on this database (made
        once, kept across restarts): it keys the page tokens."""
        ...

    async def usage(self) -> Usage:
        """For the quotas: one read of the active operations."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
