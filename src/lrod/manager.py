"""Every operation on jobs the API offers, on top of the store and the hub.
No grpc here: the api layer validates and converts, then calls this."""

from __future__ import annotations

import asyncio
import collections
import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from lrod.auth import audit
from lrod.auth.principal import Principal
from lrod.clock import Clock, utcnow
from lrod.domain.errors import ResourceExhausted, Unavailable
from lrod.domain.filters import parse_filter
from lrod.domain.names import parse_operation_name
from lrod.domain.operation import Operation, past_expiry
from lrod.domain.paging import (
    KEY_NAME,
    Cursor,
    decode_page_token,
    encode_page_token,
    page_size,
)
from lrod.domain.submission import NewJob, batch_members
from lrod.domain.webhooks import AddressRules
from lrod.hub import ChangeHub, Subscription
from lrod.jobs.registry import Registry
from lrod.metrics import Metrics
from lrod.quotas import Quotas, _Reservation
from lrod.settings import ManagerSettings, QuotaSettings
from lrod.shared_reads import SharedReads
from lrod.store.protocol import HandOff, K, KeptAnswers, OperationStore

_C = TypeVar("_C")


class LocalWorkers(Protocol):
    """This process's worker pool, as Submit sees it (WorkerPool.reserve:
    the rule for when a Submit is handed off)."""

    def reserve(self, job_type: str, priority: int, run_after: datetime) -> HandOff | None: ...


@dataclass(frozen=True)
class Page:
    operations: Sequence[Operation]
    next_page_token: str


class OperationManager:
    def __init__(
        self,
        store: OperationStore,
        hub: ChangeHub,
        registry: Registry,
        settings: ManagerSettings | None = None,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
        webhook_rules: AddressRules | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.store = store
        self.quotas = quotas or Quotas(QuotaSettings(), store)
        # Which completion webhook targets Submit accepts.
        self.webhook_rules = webhook_rules or AddressRules()
        self.hub = hub
        self.registry = registry
        self.settings = settings or ManagerSettings()
        self.clock = clock
        self._reads = SharedReads(store, hub, clock)
        self.metrics = metrics or Metrics()
        self.accepting = True
        self._page_key: bytes | None = None
        # Set by the process's wiring when its workers take hand-offs.
        self.local_workers: LocalWorkers | None = None

    def _check_accepting(self) -> None:
        if not self.accepting:
            raise Unavailable(
                "The server is shutting down; submit to another one.",
                reason="SERVER_DRAINING",
                retry_after_seconds=1.0,
            )

    async def submit(self, job: NewJob) -> Operation:
        self._check_accepting()
        # Only a request_id is checked against the fingerprint: skip the hash
        # (JSON + SHA-256) on the hot path otherwise.
        fingerprint = job.fingerprint() if job.request_id else ""
        try:
            self.quotas.take_submits(job.owner)
            reservation = await self.quotas.reserve((job,))
        except ResourceExhausted:
            # AIP-155: a retry gets its original operation, even at its limit
            # (a repeat stores nothing); a reused request_id is still refused.
            (repeat,) = await self.store.find_repeats([(job, fingerprint)])
            if repeat is None:
                raise
            if isinstance(repeat, BaseException):
                raise repeat from None
            self.metrics.submitted(repeat.job_type, False)
            return repeat
        created = False
        workers = self.local_workers
        # A job with a dedupe key is checked one at a time: never handed off.
        hand_off = (
            workers.reserve(job.job_type, job.priority, job.run_after)
            if workers is not None and not job.dedupe_key
            else None
        )
        create = (
            self.store.create(job, fingerprint)
            if hand_off is None
            else self.store.create_claimed(job, fingerprint, hand_off)
        )
        operation, created = await self._settled(reservation, create, lambda r: int(r[1]))
        self.metrics.submitted(operation.job_type, created)
        return operation

    async def batch_submit(self, jobs: Sequence[NewJob], request_id: str | None) -> list[Operation]:
        """Store all the jobs or none, in one transaction; one operation per
        job, in order. `request_id` makes the whole batch idempotent."""
        self._check_accepting()
        members = batch_members(jobs, request_id)
        try:
            if jobs:
                self.quotas.take_submits(jobs[0].owner, len(jobs))
            reservation = await self.quotas.reserve(jobs)
        except ResourceExhausted:
            # A retried batch whose every member is stored gets them back.
            repeats = await self.store.find_repeats(members)
            stored = [r for r in repeats if isinstance(r, Operation)]
            if len(stored) != len(repeats):
                raise
            for repeat in stored:
                self.metrics.submitted(repeat.job_type, False)
            return stored
        results = await self._settled(
            reservation,
            self.store.create_all(members),
            lambda results: sum(created for _, created in results),
        )
        # Counted per job type and outcome, not per job.
        counts = collections.Counter((op.job_type, created) for op, created in results)
        for (job_type, created), count in counts.items():
            self.metrics.submitted(job_type, created, count)
        return [operation for operation, _ in results]

    async def _settled(
        self, reservation: _Reservation | None, create: Awaitable[_C], count: Callable[[_C], int]
    ) -> _C:
        """`create`'s result, its quota reservation settled with `count` of it
        stored; none if it fails; held (`Quotas.left`) if the caller leaves,
        as the store runs the create to its end without it."""
        try:
            result = await create
        except asyncio.CancelledError:
            self.quotas.left(reservation)
            raise
        except BaseException:
            self.quotas.stored(reservation, 0)
            raise
        self.quotas.stored(reservation, count(result))
        return result

    async def get(self, caller: Principal, name: str) -> Operation:
        op = await self.store.get(parse_operation_name(name), _scope(caller), self.clock())
        _audit(caller, "get", op)
        return op

    async def get_or_kept(
        self, caller: Principal, name: str, kept: KeptAnswers[K]
    ) -> Operation | K:
        """As `get`, or what `kept` has for the stored version (see
        OperationStore.get_or_kept). An admin's read takes `get`: it may be
        audited, which needs the operation's owner."""
        if caller.is_admin:
            return await self.get(caller, name)
        return await self.store.get_or_kept(
            parse_operation_name(name), caller.owner, self.clock(), kept
        )

    async def list(
        self,
        caller: Principal,
        filter_text: str,
        size: int,
        token: str,
        *,
        oldest_first: bool = False,
    ) -> Page:
        query = parse_filter(filter_text)
        limit = page_size(size)
        # Bound to the filter, its direction and the caller: no good for another.
        direction = "+" if oldest_first else ""
        binding = (
            f"{query.digest()}{direction}:{hashlib.sha256(caller.name.encode()).hexdigest()[:16]}"
        )
        key = await self._page_token_key()
        after = decode_page_token(token, binding, key)
        if caller.is_admin:
            audit.admin_action(caller, "list", filter_text or "operations")
        found = await self.store.list(
            _scope(caller), query, after, limit + 1, self.clock(), oldest_first=oldest_first
        )
        page, more = found[:limit], len(found) > limit
        next_token = ""
        if more:
            last = page[-1]
            next_token = encode_page_token(Cursor(last.create_time, last.id), binding, key)
        return Page(page, next_token)

    async def _page_token_key(self) -> bytes:
        if self._page_key is None:
            self._page_key = await self.store.server_key(KEY_NAME)
        return self._page_key

    async def cancel(self, caller: Principal, name: str) -> Operation:
        # A queued operation's move to CANCELLED is counted by the store's
        # transition subscribers.
        # The cancel and its audit record run to their end together, even if
        # the caller leaves (an HTTP client hanging up): an admin's cancel of
        # another owner's operation that commits is always recorded.
        call = asyncio.ensure_future(self._cancel(caller, parse_operation_name(name)))
        call.add_done_callback(_retrieved)
        return await asyncio.shield(call)

    async def _cancel(self, caller: Principal, op_id: str) -> Operation:
        after = await self.store.cancel(
            op_id, _scope(caller), self.clock(), self.registry.retention
        )
        _audit(caller, "cancel", after)
        return after

    async def delete(self, caller: Principal, name: str) -> None:
        # Deleting stays with the owner, admins included: an operator
        # cancels, the owner (or retention) removes.
        await self.store.delete(parse_operation_name(name), caller.owner, self.clock())

    async def wait(
        self, caller: Principal, name: str, timeout: float | None, time_remaining: float | None
    ) -> Operation:
        """Return once the operation is done, or at the shortest of `timeout`,
        the RPC's remaining time and the cap, with its latest state."""
        op_id = parse_operation_name(name)
        limit = self.settings.max_wait
        if timeout is not None:
            limit = min(limit, timeout)
        if time_remaining is not None:
            limit = min(limit, time_remaining - self.settings.deadline_margin)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(limit, 0.0)
        owner = _scope(caller)
        with (
            self.quotas.waiting(caller.owner),
            self.metrics.waiting(),
            self.hub.subscribe(op_id, done_only=True) as changes,
        ):
            op = await self._reads.get(op_id, owner)
            _audit(caller, "wait", op)
            while True:
                remaining = deadline - loop.time()
                if op.done or remaining <= 0:
                    return op
                if not await changes.wait(remaining):
                    return await self._reads.get(op_id, owner)
                op = self._handed(changes, owner) or await self._reads.get(op_id, owner)

    async def watch(self, caller: Principal, name: str) -> AsyncGenerator[Operation, None]:
        """The operation now, then after every change, ending once done."""
        op_id = parse_operation_name(name)
        owner = _scope(caller)
        with (
            self.quotas.waiting(caller.owner),
            self.metrics.watching(),
            self.hub.subscribe(op_id) as changes,
        ):
            seen = -1
            op = await self._reads.get(op_id, owner)
            _audit(caller, "watch", op)
            while True:
                # Versions only grow: a row older than the one sent is skipped.
                if op.version > seen:
                    seen = op.version
                    yield op
                if op.done:
                    return
                await changes.wait(None)
                op = self._handed(changes, owner) or await self._reads.get(op_id, owner)

    def _handed(self, changes: Subscription, owner: str | None) -> Operation | None:
        """The row handed over with the change (by the committing write, or
        by the hub's one read for all subscribers), if this caller may see it
        as its own read would show it; None: read it."""
        op = changes.take_written()
        if op is None or (owner is not None and op.owner != owner):
            return None
        if past_expiry(op.expire_time, self.clock()):
            return None
        return op


def _scope(caller: Principal) -> str | None:
    """The owner a caller's reads and cancels are limited to: its own, or
    every owner's (None) for an admin."""
    return None if caller.is_admin else caller.owner


def _audit(caller: Principal, action: str, op: Operation) -> None:
    """An admin's action on another owner's operation is logged."""
    if caller.is_admin and op.owner != caller.owner:
        audit.admin_action(caller, action, op.name, op.owner)


def _retrieved(call: asyncio.Future[Any]) -> None:
    """A shielded call whose caller left: its error (a NotFound, say) is no
    one's to handle, and asyncio would log "exception was never retrieved"."""
    if not call.cancelled():
        call.exception()
