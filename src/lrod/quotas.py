"""Quotas: what one principal may ask for, and what the whole server holds.

Per principal (authenticated ones; with authentication off the one anonymous
owner is the whole server, and only the server-wide bounds apply):
- Submit rate: a token bucket (`submit_rate` per second, `submit_burst` at
  once); BatchSubmit takes one token per job. Per process.
- Active (QUEUED + RUNNING) operations. Counted in the database, so across
  every process on it.
- WaitOperation and WatchOperation calls open at once. Per process.

For everyone: the size of one Submit or BatchSubmit request; and for the
whole database, the number of QUEUED operations and their input bytes.

The database counts come from one grouped read of the active operations
(`OperationStore.usage`), taken again when it is a second old and before
any refusal, plus what this process stored since that read began: so the
hot path costs a few dictionary operations, a refusal is always judged on a
fresh count, and other processes' Submits are seen within a second. A
Submit refused here stored nothing; a batch is judged whole.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from lrod.auth.principal import ANONYMOUS_NAME
from lrod.domain.errors import QuotaViolation, ResourceExhausted
from lrod.domain.submission import NewJob
from lrod.settings import QuotaSettings
from lrod.store.protocol import OperationStore, Usage

# How old the database's counts may be before a Submit reads them again.
USAGE_MAX_AGE = 1.0
RETRY_SECONDS = 1.0
# How long a reservation whose caller left mid-create is held before it
# counts as stored (`Quotas.left`).
LEFT_SETTLE = 5.0


def exhausted(
    reason: str, message: str, subject: str, retry_after: float | None = RETRY_SECONDS
) -> ResourceExhausted:
    return ResourceExhausted(
        message,
        reason=reason,
        retry_after_seconds=retry_after,
        quota_violations=[QuotaViolation(subject, message)],
    )


@dataclass
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class _Reservation:
    owner: str
    count: int
    queued_bytes: int
    # Set once the create committed: the sequence number it committed at.
    committed: int | None = None


@dataclass
class _Counts:
    usage: Usage = field(default_factory=lambda: Usage({}, 0, 0))
    read_at: float = float("-inf")
    read_seq: int = 0


class Quotas:
    def __init__(
        self,
        settings: QuotaSettings,
        store: OperationStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._store = store
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._waits: dict[str, int] = {}
        self._counts = _Counts()
        self._reservations: list[_Reservation] = []
        self._extra_active: dict[str, int] = {}
        self._extra_queued = 0
        self._extra_bytes = 0
        self._seq = 0
        self._reading: asyncio.Future[None] | None = None

    @staticmethod
    def _per_principal(owner: str) -> bool:
        return owner != ANONYMOUS_NAME

    # -- request size and Submit rate -----------------------------------------
    def check_request_size(self, size: int) -> None:
        limit = self.settings.request_bytes
        if limit and size > limit:
            raise exhausted(
                "REQUEST_TOO_LARGE",
                f"The request is {size} bytes; the limit is {limit}.",
                "request",
                retry_after=None,
            )

    def take_submits(self, owner: str, count: int = 1) -> None:
        rate, burst = self.settings.submit_rate, self.settings.submit_burst
        if not rate or not self._per_principal(owner):
            return
        now = self._clock()
        size = max(burst, count, 1)
        bucket = self._buckets.get(owner)
        if bucket is None:
            bucket = self._buckets[owner] = _Bucket(size, now)
        bucket.tokens = min(size, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < count:
            wait = (count - bucket.tokens) / rate
            raise exhausted(
                "SUBMIT_RATE_EXCEEDED",
                f"Submits are limited to {rate:g} per second per principal.",
                f"principal:{owner}",
                retry_after=max(0.001, math.ceil(wait * 1000) / 1000),
            )
        bucket.tokens -= count

    # -- concurrent waits -------------------------------------------------------
    @contextmanager
    def waiting(self, owner: str) -> Iterator[None]:
        limit = self.settings.concurrent_waits
        if not limit or not self._per_principal(owner):
            yield
            return
        held = self._waits.get(owner, 0)
        if held >= limit:
            raise exhausted(
                "CONCURRENT_WAITS_EXCEEDED",
                f"At most {limit} WaitOperation and WatchOperation calls may be open at once"
                " per principal.",
                f"principal:{owner}",
            )
        self._waits[owner] = held + 1
        try:
            yield
        finally:
            left = self._waits[owner] - 1
            if left:
                self._waits[owner] = left
            else:
                del self._waits[owner]

    def waits_open(self, owner: str) -> int:
        """How many WaitOperation and WatchOperation calls `owner` holds
        against its quota (0 where the quota does not apply)."""
        return self._waits.get(owner, 0)

    # -- active and queued operations -------------------------------------------
    async def reserve(self, jobs: Sequence[NewJob]) -> _Reservation | None:
        """Room for `jobs` (one owner), or ResourceExhausted. Call `stored`
        with how many were created once the create returns (or failed)."""
        s = self.settings
        if not jobs or not (s.active_operations or s.queued_operations or s.queued_input_bytes):
            return None
        owner = jobs[0].owner
        count = len(jobs)
        size = sum(len(job.input.value) for job in jobs)
        if self._clock() - self._counts.read_at > USAGE_MAX_AGE:
            await self._read_usage()
        refusal = self._refusal(owner, count, size)
        if refusal is not None:
            await self._read_usage()
            refusal = self._refusal(owner, count, size)
            if refusal is not None:
                raise refusal
        reservation = _Reservation(owner, count, size)
        self._reservations.append(reservation)
        self._add(reservation, 1)
        return reservation

    def stored(self, reservation: _Reservation | None, created: int) -> None:
        if reservation is None:
            return
        if not created:
            self._reservations.remove(reservation)
            self._add(reservation, -1)
            return
        if created != reservation.count:
            self._add(reservation, -1)
            reservation.count = created
            self._add(reservation, 1)
        self._seq += 1
        reservation.committed = self._seq

    def left(self, reservation: _Reservation | None) -> None:
        """The caller left while its create was in flight (a client that hung
        up): the store carries the write on to its end, unseen from here. The
        reservation stays held as if still being created, and counts as
        stored after LEFT_SETTLE seconds (far longer than a create takes),
        until a usage read begun after that counts what really was. The safe
        side: at worst a refusal for those seconds, never an admission past
        a limit (unless a create outlasts them)."""
        if reservation is not None:
            asyncio.get_running_loop().call_later(
                LEFT_SETTLE, self.stored, reservation, reservation.count
            )

    def reserved(self, owner: str) -> int:
        """How many operations of `owner` are reserved and not yet in a usage
        read (being created, or stored since the last read)."""
        return sum(r.count for r in self._reservations if r.owner == owner)

    def _add(self, r: _Reservation, sign: int) -> None:
        """Running totals of the reservations not yet in a database read."""
        left = self._extra_active.get(r.owner, 0) + sign * r.count
        if left:
            self._extra_active[r.owner] = left
        else:
            self._extra_active.pop(r.owner, None)
        self._extra_queued += sign * r.count
        self._extra_bytes += sign * r.queued_bytes

    def _refusal(self, owner: str, count: int, size: int) -> ResourceExhausted | None:
        s = self.settings
        usage = self._counts.usage
        active = usage.active_by_owner.get(owner, 0) + self._extra_active.get(owner, 0)
        queued = usage.queued + self._extra_queued
        queued_bytes = usage.queued_bytes + self._extra_bytes
        over_active = s.active_operations and active + count > s.active_operations
        if over_active and self._per_principal(owner):
            return exhausted(
                "ACTIVE_OPERATIONS_EXCEEDED",
                f"At most {s.active_operations} operations may be queued or running at once"
                " per principal.",
                f"principal:{owner}",
            )
        if s.queued_operations and queued + count > s.queued_operations:
            return exhausted(
                "QUEUE_FULL",
                f"The server holds at most {s.queued_operations} queued operations.",
                "server",
            )
        if s.queued_input_bytes and queued_bytes + size > s.queued_input_bytes:
            return exhausted(
                "QUEUED_INPUT_FULL",
                f"The server holds at most {s.queued_input_bytes} bytes of queued input.",
                "server",
            )
        return None

    async def _read_usage(self) -> None:
        """One read at a time; Submits arriving meanwhile share it."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_once())
        reading = self._reading
        try:
            await asyncio.shield(reading)
        finally:
            if self._reading is reading and reading.done():
                self._reading = None

    async def _read_once(self) -> None:
        started_at, seq = self._clock(), self._seq
        usage = await self._store.usage()
        # What committed before the read began is in it; what committed
        # during it may be too (counted twice until the next read: the safe
        # side); what has not committed yet is not.
        kept = []
        for r in self._reservations:
            if r.committed is not None and r.committed <= seq:
                self._add(r, -1)
            else:
                kept.append(r)
        self._reservations = kept
        self._counts = _Counts(usage, started_at, seq)
