"""The worker pool, in the shape of procrastinate's worker: a bounded number
of attempts at once (one task each), a claim loop woken by the hub, a stop
event, and a drain that hands unfinished jobs back.

Batched, as the fastest queues do it: a slot is free again as soon as its
handler returns, while the finishing write goes on (at most `concurrency`
such writes at once; they share transactions through the store's group
commit, each fenced by its lease token), so that the next claim overlaps the
last finishes; one heartbeat loop renews every lease the pool holds in one
statement; and the claim loop claims jobs beyond the free slots into a local
queue (one statement per claim batch): at most `claim_ahead`, and only as
many as the pool is expected to start within `claim_ahead_wait` at the mean
time its handlers took (`_ahead`), so that short jobs are claimed in batches
while a job claimed ahead of slow ones, RUNNING from its claim, does not
wait behind them.

Claims run in tasks of their own, up to the store's `claims_in_flight` at
once (PostgreSQL: two) while jobs are known to wait: a claim asked while
another is out goes in the worker writes' next flush (on PostgreSQL out
beside the first: dialect.worker_flushes), so that its jobs are at hand
when the first claim's are done. Every claim out counts its whole
`limit` against the room (free slots plus `claim_ahead`), so the pool never
holds more jobs than that; a stop waits for the claims out and drains or
hands back their jobs with the rest."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections import deque
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from lrod.clock import Clock, utcnow
from lrod.domain.errors import LrodError
from lrod.domain.states import State
from lrod.hub import ChangeHub
from lrod.jobs.registry import Registry
from lrod.metrics import Metrics
from lrod.settings import WorkerSettings
from lrod.store.protocol import Claim, HandOff, OperationStore
from lrod.worker.attempt import Attempt

log = logging.getLogger("lrod.worker")
# The weight of the newest handler time in the pool's moving mean.
_MEAN_WEIGHT = 0.2


class WorkerPool:
    def __init__(
        self,
        store: OperationStore,
        hub: ChangeHub,
        registry: Registry,
        settings: WorkerSettings | None = None,
        clock: Clock = utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._hub = hub
        self._registry = registry
        self.settings = settings or WorkerSettings()
        self._clock = clock
        self._job_types = sorted(t.name for t in registry)
        self._served = frozenset(self._job_types)
        # Slots held for Submits being stored claimed (reserve), and the
        # hub's work count at the start of the last claim that came back
        # short (None: work may be waiting), with the loop time until which
        # that still stands without a poll.
        self._reserved = 0
        self._settled = asyncio.Event()
        self._settled.set()
        self._settle_given_up = False  # stop() stopped waiting for them
        self._idle_since_work: int | None = None
        self._idle_until = 0.0
        self._metrics = metrics or Metrics()
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.concurrency * 2, thread_name_prefix="lrod-job"
        )
        # Every attempt until its outcome is written; `_busy`: those whose
        # handler still runs (they hold the slots).
        self._running: dict[asyncio.Task[None], Attempt] = {}
        self._busy: set[asyncio.Task[None]] = set()
        # Claimed ahead, not started yet: their leases are renewed too.
        self._queued: deque[Claim] = deque()
        # The claims out (each task's `limit`), at most `_claims_in_flight`;
        # the number of the last claim asked, and of the last whose answer
        # set the idle state (answers come back in order, but a later claim
        # is the newer word on whether work waits).
        self._claims_in_flight = max(
            1,
            store.claims_in_flight
            if self.settings.claims_in_flight is None
            else self.settings.claims_in_flight,
        )
        self._claiming: dict[asyncio.Task[None], int] = {}
        # The mean time a handler held its slot (an exponential moving
        # average, seconds; None until one has finished): how far ahead to claim.
        self._handler_mean: float | None = None
        self._claims_asked = 0
        self._claims_heard = 0
        # The loop woke while a claim was out (and may have let the wake go
        # for it): the claim's answer wakes it again, as a wake kept during
        # an awaited claim would.
        self._woke_while_claiming = False
        self._stopping = asyncio.Event()
        self._closed = asyncio.Event()
        self._hurry = asyncio.Event()
        # The claim loop's wait: one future, resolved by whichever comes first
        # (work, a freed slot, the poll timer, a stop); `_poked` keeps a wake
        # that came while the loop was busy, as an Event's flag would.
        self._wake: asyncio.Future[None] | None = None
        self._poked = False
        self._loop_task: asyncio.Task[None] | None = None
        self._renew_task: asyncio.Task[None] | None = None
        self._metrics.running_jobs.set_function(lambda: len(self._busy))

    @property
    def running_count(self) -> int:
        return len(self._busy)

    @property
    def queued_count(self) -> int:
        return len(self._queued)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="lrod-claim-loop")
        self._renew_task = asyncio.create_task(self._renew_loop(), name="lrod-lease-renewal")

    def _free_slots(self) -> int:
        """Slots whose handler is done; at most `concurrency` outcomes being
        written besides per claim in flight (one flush's worth out, one
        gathering behind it: with one, a pool claiming ahead would stall
        its next jobs until the flush out came back)."""
        concurrency = self.settings.concurrency
        running = len(self._running) + self._reserved
        writes = concurrency * self._claims_in_flight
        return min(concurrency - len(self._busy) - self._reserved, concurrency + writes - running)

    def _claim_wanted(self) -> int:
        """How many to claim now: the free slots not served by the local
        queue or the claims out, plus `claim_ahead`; once claiming ahead,
        wait until that ran down by half of it, so that claims come in
        batches. A further claim while one is out only while jobs are known
        to wait (the last answer was full): else the claim out is the look."""
        if self._claiming and (
            len(self._claiming) >= self._claims_in_flight or self._idle_since_work is not None
        ):
            return 0
        ahead = self._ahead()
        held = len(self._queued) + sum(self._claiming.values())
        room = self._free_slots() - held + ahead
        if room <= 0 or (ahead and held and room < max(1, ahead // 2)):
            return 0
        return room

    def _ahead(self) -> int:
        """How many jobs to claim beyond the free slots: as many as the pool
        starts within `claim_ahead_wait` with every slot busy (concurrency
        over the mean handler time), at most `claim_ahead`; none before a
        handler has finished, so a pool of slow jobs never claims ahead."""
        most = self.settings.claim_ahead
        mean = self._handler_mean
        if most <= 0 or mean is None:
            return 0
        if mean <= 0:
            return most
        return min(most, int(self.settings.concurrency * self.settings.claim_ahead_wait / mean))

    def _handler_took(self, seconds: float) -> None:
        mean = self._handler_mean
        self._handler_mean = seconds if mean is None else mean + _MEAN_WEIGHT * (seconds - mean)

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_rescue = 0.0
        while not self._stopping.is_set():
            if loop.time() >= next_rescue:
                await self._rescue()
                next_rescue = loop.time() + self.settings.rescue_interval
            if self._claim_wanted() > 0 and not self._known_idle():
                if self._idle_since_work is not None:
                    await self._finishes_written()
                    if self._stopping.is_set():
                        break
                wanted = self._claim_wanted()
                if wanted > 0:
                    self._claim(wanted)
                    continue
            await self._idle()

    async def _finishes_written(self) -> None:
        """Until the outcomes being written as this is asked are written
        (each committed, or failed); not those begun meanwhile, which would
        defer the claim for as long as handlers keep returning.

        Asked before a claim while the last claim came back short: no job
        is known to wait, so the claim is a look (a freed slot's, the poll's,
        or for work just announced), and the outcomes being written go
        first. A slot frees when its handler returns, before its outcome is
        written; on SQLite's one writer the claim the freed slot sets off
        would otherwise most often go before that finishing write, and the
        operation would end a claim's transaction later. With jobs waiting
        (the last claim was full) the claim does not wait for them: the
        store runs it in the worker writes' next transaction, after the
        finishes queued by then, which keeps a backlog moving."""
        writing = [task for task in self._running if task not in self._busy]
        if writing:
            await asyncio.wait(writing)

    # -- the in-process hand-off of a Submit ---------------------------------
    @property
    def idle(self) -> bool:
        """The last claim came back short and no work was announced since:
        a claim now would find no due job this pool knows of."""
        return self._idle_since_work == self._hub.work_announced

    def _known_idle(self) -> bool:
        """Hand-off mode: a freed slot need not claim while the pool is
        idle and its poll is not due (a job whose schedule time passed
        unannounced is found by the poll)."""
        return (
            self.settings.hand_off
            and self.idle
            and asyncio.get_running_loop().time() < self._idle_until
        )

    def reserve(self, job_type: str, priority: int, run_after: datetime) -> HandOff | None:
        """The one rule for handing a Submit to this pool without a claim:
        a slot for it if the pool serves `job_type`, the job is due, nothing
        waits in the local queue, the pool's last claim came back short with
        no work announced since (so no queued job this pool knows of can be
        overtaken), and a slot is free. `priority` is judged by the store,
        which refuses the hand-off (stores the job queued) if a due queued
        job of these types has at least that priority. None: submit as
        usual."""
        if (
            self._loop_task is None
            or self._stopping.is_set()
            or self._queued
            or job_type not in self._served
            or not self.settings.hand_off
            or not self.idle
            or self._free_slots() <= 0
        ):
            return None
        now = self._clock()
        if run_after > now:
            return None
        self._reserved += 1
        self._settled.clear()
        return _HandOff(
            self,
            self.settings.worker_id,
            secrets.token_hex(16),
            now,
            now + self.settings.lease,
            self._job_types,
            job_type,
        )

    def _stored(self, job_type: str, claim: Claim | None) -> None:
        """A reservation settled: start its job if it was stored claimed."""
        self._reserved -= 1
        self._metrics.handed_off(job_type, claim is not None)
        if claim is not None:
            self._metrics.moved(claim.operation.job_type, State.QUEUED, State.RUNNING)
            if self._settle_given_up:
                # stop() no longer waits for it: started now, it would run
                # undrained and with no lease renewal. Its lease expires and
                # the rescue gives it to a worker.
                log.warning(
                    "a handed-off Submit was stored after the drain; its lease will expire",
                    extra={"operation": claim.operation.name},
                )
            else:
                self._start(claim)
        else:
            self._slot_freed()  # stored queued: the slot it held is free
        if self._reserved == 0:
            self._settled.set()

    async def _rescue(self) -> None:
        # Counted and logged by the store's transition subscribers.
        try:
            await self._store.rescue(self._clock(), 100, self._registry.policy)
        except LrodError as error:
            log.warning("rescue failed: %s", error.message)

    def _claim(self, limit: int) -> None:
        """Ask for up to `limit` jobs, now (the store queues the claim at
        the call); its answer is taken in a task of its own, which wakes the
        claim loop if it brought jobs."""
        self._claims_asked += 1
        asked = self._store.claim(
            self.settings.worker_id, self._clock(), self.settings.lease, limit, self._job_types
        )
        task = asyncio.create_task(
            self._claimed(asked, limit, self._hub.work_announced, self._claims_asked),
            name="lrod-claim",
        )
        self._claiming[task] = limit

    async def _claimed(
        self, asked: Awaitable[Sequence[Claim]], limit: int, work: int, number: int
    ) -> None:
        claims: Sequence[Claim] = ()
        try:
            claims = await asked
        except LrodError as error:
            log.warning("claim failed: %s", error.message)
            return
        except Exception:
            log.exception("claim failed unexpectedly")
            return
        finally:
            self._claiming.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            # Wake the loop if jobs came (it may claim more) or it woke
            # while this was out; not for an empty answer or a failure alone,
            # which would claim again at once (the poll comes).
            if claims or self._woke_while_claiming:
                self._woke_while_claiming = False
                self._poke()
        if number > self._claims_heard:
            self._claims_heard = number
            if len(claims) < limit:
                self._idle_since_work = work
                self._idle_until = asyncio.get_running_loop().time() + self.settings.poll_interval
            else:
                self._idle_since_work = None
        for claim in claims:
            self._metrics.moved(claim.operation.job_type, State.QUEUED, State.RUNNING)
        # Claimed as a drain began, these jobs are RUNNING already for anyone
        # who reads them: they start like the others and get the drain's
        # grace (`stop` waits for the claims out, then gathers the running
        # attempts and hands back what is still queued).
        self._queued.extend(claims)
        if len(claims) != len(self._queued):
            ordered = sorted(self._queued, key=_claim_order)
            self._queued = deque(ordered)
        self._start_queued()

    def _slot_freed(self) -> None:
        """A slot may be free: a handler returned, an outcome was written,
        or a reservation ended unclaimed. Start the jobs waiting in the local
        queue now (not at the next handler's return or claim's answer: with
        every handler done there may be neither, and a pool whose room is
        more than half held makes no claim), and wake the claim loop."""
        if not self._stopping.is_set():
            self._start_queued()
        self._poke()

    def _start_queued(self) -> None:
        while self._queued and self._free_slots() > 0:
            self._start(self._queued.popleft())

    def _start(self, claim: Claim) -> None:
        """Start one attempt now, in a task of its own (its slot's)."""
        attempt = Attempt(
            claim,
            self._registry,
            self._store,
            self._hub,
            self.settings,
            self._clock,
            self._executor,
            self._metrics,
        )
        task = asyncio.create_task(self._run(attempt), name=f"lrod-job-{claim.operation.id}")
        self._running[task] = attempt
        self._busy.add(task)

    async def _run(self, attempt: Attempt) -> None:
        task: asyncio.Task[None] | None = asyncio.current_task()
        outcome = None
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            outcome = await attempt.execute()
        except Exception:
            attempt.log.exception(
                "the attempt failed unexpectedly; the lease will expire and "
                "another worker will take the job"
            )
        finally:
            # The slot is free once the handler is done: the next job starts
            # while this one's outcome is written.
            self._handler_took(loop.time() - began)
            self._busy.discard(task)
            self._slot_freed()
        try:
            if outcome is not None:
                await attempt.record(*outcome)
        except Exception:
            attempt.log.exception(
                "recording the attempt failed; the lease will expire and "
                "another worker will take the job"
            )
        finally:
            # A written outcome frees a slot too when the writes out held
            # them all (`_free_slots`).
            self._running.pop(task, None)  # type: ignore[arg-type]
            self._slot_freed()

    async def _renew_loop(self) -> None:
        """The pool's one heartbeat: every third of the lease, renew every
        lease it holds in one statement; tell attempts whose lease is gone,
        and relay cancel requests."""
        interval = self.settings.lease.total_seconds() / 3
        while not self._closed.is_set():
            try:
                async with asyncio.timeout(interval):
                    await self._closed.wait()
                return
            except TimeoutError:
                pass
            await self._renew()

    async def _renew(self) -> None:
        attempts = {a.operation_id: a for a in self._running.values()}
        claims = [a.claim for a in attempts.values()] + list(self._queued)
        if not claims:
            return
        try:
            beats = await self._store.renew(claims, self._clock(), self.settings.lease)
        except LrodError as error:
            log.warning("renewing leases failed: %s", error.message)
            return
        lost: set[str] = set()
        cancels: set[str] = set()
        for claim, beat in zip(claims, beats, strict=True):
            if not beat.held:
                lost.add(claim.operation.id)
            elif beat.cancel_requested:
                cancels.add(claim.operation.id)
        for op_id in lost:
            attempt = attempts.get(op_id)
            if attempt is not None and attempt.claim.operation.id == op_id:
                attempt.lease_lost()
        if lost or cancels:
            kept: deque[Claim] = deque()
            for claim in self._queued:
                op_id = claim.operation.id
                if op_id in lost:
                    log.warning("lease lost before the job started", extra={"operation": op_id})
                    continue
                if op_id in cancels:
                    claim = _with_cancel(claim)
                kept.append(claim)
            self._queued = kept
        running_cancels = [op_id for op_id in cancels if op_id in attempts]
        if running_cancels:
            self._hub.cancel_requested(running_cancels)

    async def _release_all(self, claims: list[Claim]) -> None:
        now = self._clock()
        results = await asyncio.gather(
            *(self._store.release(claim, now) for claim in claims), return_exceptions=True
        )
        for claim, result in zip(claims, results, strict=True):
            if isinstance(result, BaseException):
                log.warning(
                    "handing back a claimed job failed; its lease will expire",
                    extra={"operation": claim.operation.name, "error": repr(result)},
                )

    def _poke(self) -> None:
        """Wake the claim loop (a slot freed, or a stop)."""
        self._poked = True
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def _idle(self) -> None:
        """Until work arrives, a slot frees, the poll interval passes or the
        pool stops: one future and one timer, no task per wait."""
        if self._poked or self._stopping.is_set():
            self._poked = False
            self._woke_while_claiming = bool(self._claiming)
            return
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        if self._known_idle():
            # A freed slot's wake-up that found the pool idle: the poll stays
            # due a poll interval after the last short claim, not one after
            # each freed slot (which would put it off while slots free).
            timer = loop.call_at(self._idle_until, _wake_up, wake)
        else:
            timer = loop.call_later(self.settings.poll_interval, _wake_up, wake)
        self._hub.wake_on_work(wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._hub.work_wait_ended(wake)
            self._wake = None
            self._poked = False
            self._woke_while_claiming = bool(self._claiming)

    def hurry(self) -> None:
        """Cut a drain under way short: hand the running jobs back now."""
        self._hurry.set()

    async def _drain(self, tasks: set[asyncio.Task[None]], grace: float) -> set[asyncio.Task[None]]:
        """Wait up to `grace` for `tasks`, or until hurried; the unfinished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        pending: set[asyncio.Future[Any]] = set(tasks)
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            while pending and not hurried.done() and (left := deadline - loop.time()) > 0:
                _, pending = await asyncio.wait(
                    pending | {hurried}, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(hurried)
        finally:
            hurried.cancel()
        return {task for task in tasks if not task.done()}

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; give running jobs `grace` seconds to finish; release
        the rest so another worker takes them at once."""
        self._stopping.set()
        self._poke()
        if self._loop_task is not None:
            await self._loop_task
        # The claims out: their jobs are this pool's once they come back.
        while self._claiming:
            await asyncio.wait(list(self._claiming))
        # Submits being stored claimed start (and are drained) like claims.
        try:
            async with asyncio.timeout(self.settings.drain_grace + 5):
                await self._settled.wait()
        except TimeoutError:
            self._settle_given_up = True
            log.warning(
                "%d handed-off Submits did not settle; their leases will expire", self._reserved
            )
        queued, self._queued = list(self._queued), deque()
        if queued:
            await self._release_all(queued)
        tasks = set(self._running)
        if tasks:
            grace = self.settings.drain_grace if grace is None else grace
            log.info("draining %d running jobs (grace %.1fs)", len(tasks), grace)
            unfinished = await self._drain(tasks, grace)
            for task in unfinished:
                if task in self._busy:
                    self._running[task].release()
            if unfinished:
                await asyncio.wait(unfinished, timeout=self.settings.cancel_grace + 5)
        self._closed.set()
        if self._renew_task is not None:
            await self._renew_task
        self._executor.shutdown(wait=False, cancel_futures=True)


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)


@dataclasses.dataclass(frozen=True)
class _HandOff:
    """A slot held for one Submit (store.protocol.HandOff)."""

    pool: WorkerPool
    worker_id: str
    lease_token: str
    now: datetime
    lease_expires_at: datetime
    job_types: list[str]
    job_type: str

    def stored(self, claim: Claim | None) -> None:
        self.pool._stored(self.job_type, claim)


def _claim_order(claim: Claim) -> tuple[int, object]:
    return (-claim.operation.priority, claim.operation.run_after)


def _with_cancel(claim: Claim) -> Claim:
    """A queued claim whose operation was asked to cancel: its attempt sees
    the request when it starts."""
    return dataclasses.replace(
        claim, operation=dataclasses.replace(claim.operation, cancel_requested=True)
    )
