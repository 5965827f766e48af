"""The worker pool, in the shape of procrastinate's worker: a bounded number
of attempts at once (one task each), a claim loop woken by the hub, a stop
event, and a drain that hands unfinished jobs back."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from lrod.clock import Clock, utcnow
from lrod.domain.errors import LrodError
from lrod.domain.states import State
from lrod.hub import ChangeHub
from lrod.jobs.registry import Registry
from lrod.metrics import Metrics
from lrod.settings import WorkerSettings
from lrod.store.protocol import OperationStore
from lrod.worker.attempt import Attempt

log = logging.getLogger("lrod.worker")


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
        self._metrics = metrics or Metrics()
        self._executor = ThreadPoolExecutor(
            max_workers=self.settings.concurrency * 2, thread_name_prefix="lrod-job"
        )
        self._running: dict[asyncio.Task[None], Attempt] = {}
        self._stopping = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._metrics.running_jobs.set_function(lambda: len(self._running))

    @property
    def running_count(self) -> int:
        return len(self._running)

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._claim_loop(), name="lrod-claim-loop")

    async def _claim_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_rescue = 0.0
        while not self._stopping.is_set():
            if loop.time() >= next_rescue:
                await self._rescue()
                next_rescue = loop.time() + self.settings.rescue_interval
            free = self.settings.concurrency - len(self._running)
            if free > 0 and await self._claim(free):
                continue
            await self._idle()

    async def _rescue(self) -> None:
        # Counted and logged by the store's transition subscribers.
        try:
            await self._store.rescue(self._clock(), 100, self._registry.policy)
        except LrodError as error:
            log.warning("rescue failed: %s", error.message)

    async def _claim(self, free: int) -> bool:
        try:
            claims = await self._store.claim(
                self.settings.worker_id,
                self._clock(),
                self.settings.lease,
                free,
                self._job_types,
            )
        except LrodError as error:
            log.warning("claim failed: %s", error.message)
            return False
        for claim in claims:
            self._metrics.moved(claim.operation.job_type, State.QUEUED, State.RUNNING)
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
        return bool(claims)

    async def _run(self, attempt: Attempt) -> None:
        try:
            await attempt.run()
        except Exception:
            attempt.log.exception(
                "recording the attempt failed; the lease will expire and "
                "another worker will take the job"
            )
        finally:
            self._running.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
            self._slot_freed.set()

    async def _idle(self) -> None:
        waiters = {
            asyncio.create_task(self._hub.wait_for_work(self.settings.poll_interval)),
            asyncio.create_task(self._slot_freed.wait()),
            asyncio.create_task(self._stopping.wait()),
        }
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            waiter.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self._slot_freed.clear()

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming; give running jobs `grace` seconds to finish; release
        the rest so another worker takes them at once."""
        self._stopping.set()
        if self._loop_task is not None:
            await self._loop_task
        tasks = set(self._running)
        if tasks:
            grace = self.settings.drain_grace if grace is None else grace
            log.info("draining %d running jobs (grace %.1fs)", len(tasks), grace)
            _, unfinished = await asyncio.wait(tasks, timeout=grace)
            for task in unfinished:
                self._running[task].release()
            if unfinished:
                await asyncio.wait(unfinished, timeout=self.settings.cancel_grace + 5)
        self._executor.shutdown(wait=False, cancel_futures=True)
