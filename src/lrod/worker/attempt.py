"""One attempt of one job: run the handler under its time limit while a
keeper renews the lease, writes coalesced progress and relays cancellation;
then record the outcome, fenced by the claim's lease token."""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import Executor

from google.protobuf.message import DecodeError, Message

from lrod.clock import Clock
from lrod.domain.errors import Code, LrodError
from lrod.domain.operation import Operation, Payload, PublicError
from lrod.domain.retry import decide_retry
from lrod.hub import ChangeHub
from lrod.jobs.context import JobCancelled, JobContext, JobInfo
from lrod.jobs.registry import TYPE_URL_PREFIX, JobType, Registry
from lrod.logs import EventLogger, with_fields
from lrod.metrics import Metrics
from lrod.settings import WorkerSettings
from lrod.store.protocol import Claim, Heartbeat, OperationStore
from lrod.worker import outcome as oc

log = logging.getLogger("lrod.worker")


class Attempt:
    """Per attempt, nothing runs beside the handler unless needed: the
    handler runs in the pool's task for the job, under one timer for its time
    limit; a cancel reaches it by a callback from the hub; the progress
    writer starts only once the handler reports progress."""

    def __init__(
        self,
        claim: Claim,
        registry: Registry,
        store: OperationStore,
        hub: ChangeHub,
        settings: WorkerSettings,
        clock: Clock,
        executor: Executor,
        metrics: Metrics | None = None,
    ) -> None:
        self.claim = claim
        self._registry = registry
        self._store = store
        self._hub = hub
        self._settings = settings
        self._clock = clock
        self._executor = executor
        self._metrics = metrics or Metrics()
        op = claim.operation
        self._loop = loop = asyncio.get_running_loop()
        self.ctx = JobContext(
            JobInfo(op.name, op.job_type, op.attempt, op.max_attempts, op.labels), loop
        )
        self._log: EventLogger | None = None
        self._started = loop.time()
        # The task the handler runs in, while it runs (None before and after).
        self._runner: asyncio.Task[None] | None = None
        self._stop_sent = False  # the runner was cancelled to stop the handler
        self._timed_out = False
        self._grace: asyncio.TimerHandle | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._releasing = False
        self._lease_lost = False
        self._beat: asyncio.Future[Heartbeat] | None = None
        self._recording = False

    @property
    def log(self) -> EventLogger:
        """Every line about this attempt carries the same fields; made at
        the first line (most attempts log nothing above INFO)."""
        if self._log is None:
            op = self.claim.operation
            self._log = with_fields(
                log,
                operation=op.name,
                job_type=op.job_type,
                attempt=op.attempt,
                worker=self._settings.worker_id,
            )
        return self._log

    @property
    def operation_id(self) -> str:
        return self.claim.operation.id

    def release(self) -> None:
        """Stop the handler and hand the job back (graceful drain)."""
        self._releasing = True
        self._stop_handler()

    async def run(self) -> None:
        await self.record(*await self.execute())

    async def execute(self) -> tuple[oc.Outcome, JobType | None]:
        """Run the handler to its outcome (nothing written yet), in the
        calling task: stopping the handler cancels that task while the
        handler runs in it."""
        if log.isEnabledFor(logging.INFO):
            self.log.info("attempt started")
        job_type = self._registry.get(self.claim.operation.job_type)
        if job_type is None:
            error = PublicError(
                Code.FAILED_PRECONDITION,
                "This server does not know the job type.",
                "UNKNOWN_JOB_TYPE",
            )
            return oc.Failed(error, "job type not registered", False), None
        return await self._execute(job_type), job_type

    async def record(self, outcome: oc.Outcome, job_type: JobType | None) -> None:
        """Write the outcome, fenced by the claim's lease token."""
        await self._record(outcome, job_type)

    async def _execute(self, job_type: JobType) -> oc.Outcome:
        try:
            message = job_type.input_type.FromString(self.claim.operation.input.value)
        except DecodeError as error:
            return oc.from_exception(error, job_type)
        timeout = (self.claim.operation.timeout or job_type.default_timeout).total_seconds()
        op_id = self.operation_id
        self._hub.on_cancel(op_id, self._cancel_requested)
        timer = self._loop.call_later(timeout, self._time_up)
        self.ctx.when_reported(self._progress_reported)
        try:
            if self.claim.operation.cancel_requested:
                self._cancel_requested()
            return await self._run_handler(job_type, message, timeout)
        finally:
            timer.cancel()
            self._hub.forget_cancel(op_id)
            self.ctx.when_reported(None)
            if self._grace is not None:
                self._grace.cancel()
            if self._keeper is not None:
                self._keeper.cancel()
                await asyncio.gather(self._keeper, return_exceptions=True)
            # A heartbeat under way must land before the finishing write.
            if self._beat is not None:
                await asyncio.gather(self._beat, return_exceptions=True)

    async def _run_handler(self, job_type: JobType, message: Message, timeout: float) -> oc.Outcome:
        runner = asyncio.current_task()
        assert runner is not None
        result: object = None
        error: BaseException | None = None
        cancelled = False
        self._runner = runner
        try:
            if job_type.is_async:
                coroutine = job_type.handler(self.ctx, message)
                assert asyncio.iscoroutine(coroutine)
                result = await coroutine
            else:
                call = functools.partial(job_type.handler, self.ctx, message)
                result = await self._loop.run_in_executor(self._executor, call)
        except asyncio.CancelledError as raised:
            # Ours (a stop) is taken back below; anyone else's goes on.
            if runner.cancelling() > self._stop_sent:
                raise
            cancelled, error = True, raised
        except Exception as raised:
            error = raised
        finally:
            self._runner = None
            if self._stop_sent:
                runner.uncancel()
        interrupted = self._interrupted(cancelled or error is not None)
        if interrupted is not None:
            return interrupted
        if self._timed_out:
            return oc.Failed(
                oc.DEADLINE_ERROR, f"timed out after {timeout:g}s", job_type.retry_timeouts
            )
        if cancelled:
            return oc.Cancelled()
        if error is not None:
            if isinstance(error, JobCancelled) and self.ctx.cancel_requested:
                return oc.Cancelled()
            return oc.from_exception(error, job_type)
        if not isinstance(result, job_type.output_type):
            return oc.wrong_output(result, job_type)
        return oc.Succeeded(result)

    def _interrupted(self, handler_stopped: bool) -> oc.Outcome | None:
        if self._lease_lost:
            return oc.LeaseLost()
        if self._releasing:
            return oc.Released()
        if self.ctx.cancel_requested and handler_stopped:
            return oc.Cancelled()
        return None

    def _time_up(self) -> None:
        self._timed_out = True
        self._stop_handler()

    def _stop_handler(self) -> None:
        self.ctx.stopped.set()
        runner = self._runner
        if runner is not None and not self._stop_sent:
            self._stop_sent = True
            runner.cancel()

    def _cancel_requested(self) -> None:
        """CancelOperation reached this job: tell the handler, and stop it
        once the cancel grace has passed."""
        if self.ctx.cancel_requested:
            return
        if log.isEnabledFor(logging.INFO):
            self.log.info("cancel requested")
        self.ctx.request_cancel()
        self._grace = self._loop.call_later(self._settings.cancel_grace, self._stop_handler)

    def lease_lost(self) -> None:
        """The pool's heartbeat found the lease gone: stop, write nothing.
        (Once the outcome is being written, the row is ours no more anyway.)"""
        if self._lease_lost or self._recording:
            return
        self.log.warning("lease lost; another worker may hold the job now")
        self._lease_lost = True
        self._stop_handler()

    def _progress_reported(self) -> None:
        """The handler reported progress: start the writer, once."""
        if self._keeper is None and self._runner is not None:
            self._keeper = asyncio.create_task(self._keep_lease())

    async def _keep_lease(self) -> None:
        """Write reported progress (coalesced, at most every progress
        interval from the attempt's start). The lease itself is renewed by
        the pool's one heartbeat loop for all its claims; a progress write
        renews it too."""
        lease = self._settings.lease
        loop = self._loop
        last_write = self._started
        while True:
            # No timer: nothing is due here until the handler reports.
            await self.ctx.wait_for_report(None)
            pause = last_write + self._settings.progress_interval - loop.time()
            if pause > 0:
                await asyncio.sleep(pause)
            progress = self.ctx.take_progress()
            if progress is None:
                continue
            self._beat = asyncio.ensure_future(
                self._store.heartbeat(self.claim, self._clock(), lease, progress)
            )
            try:
                beat = await asyncio.shield(self._beat)
            except LrodError as error:
                self.log.warning("heartbeat failed: %s", error.message)
                last_write = loop.time()
                continue
            last_write = loop.time()
            if not beat.held:
                self.lease_lost()
                return
            if beat.cancel_requested:
                self._hub.cancel_requested([self.operation_id])

    async def _record(self, outcome: oc.Outcome, job_type: JobType | None) -> None:
        self._recording = True
        store, claim, now = self._store, self.claim, self._clock()
        retention = self._registry.retention(self.claim.operation.job_type)
        progress = self.ctx.latest_progress()
        written: Operation | None = None
        if isinstance(outcome, oc.LeaseLost):
            pass
        elif isinstance(outcome, oc.Succeeded):
            # What Any.Pack makes, without the Any: the type's URL and the bytes.
            result = outcome.result
            payload = Payload(
                TYPE_URL_PREFIX + result.DESCRIPTOR.full_name, result.SerializeToString()
            )
            written = await store.succeed(claim, now, payload, retention, progress=progress)
        elif isinstance(outcome, oc.Cancelled):
            written = await store.cancel_running(claim, now, retention, progress=progress)
        elif isinstance(outcome, oc.Released):
            written = await store.release(claim, now)
        else:
            written = await self._record_failure(outcome, job_type)
        self._report(outcome, written)

    async def _record_failure(
        self, failure: oc.Failed, job_type: JobType | None
    ) -> Operation | None:
        op, now = self.claim.operation, self._clock()
        policy = self._registry.policy(op.job_type)
        decision = decide_retry(
            error=failure.error,
            # A type this worker does not know is not retried here.
            retryable=failure.retryable and job_type is not None,
            attempt=op.attempt,
            max_attempts=op.max_attempts,
            backoff=policy.backoff,
            now=now,
        )
        retry_at = decision.retry_at
        # The internal error (a traceback) goes to this log line and the
        # attempt history, never into the operation.
        if failure.error.code is Code.INTERNAL:
            level = logging.ERROR  # a bug in the handler, or in lrod
        else:
            level = logging.INFO if retry_at else logging.WARNING
        self.log.log(
            level,
            "attempt failed; will retry" if retry_at else "job failed",
            extra={
                "reason": failure.error.reason,
                "code": failure.error.code.name,
                "retry_at": retry_at.isoformat() if retry_at else None,
                "internal_error": failure.internal_error,
            },
        )
        return await self._store.fail(
            self.claim,
            now,
            failure.error,
            failure.internal_error,
            retry_at,
            policy.retention,
            progress=self.ctx.latest_progress(),
            final_error=decision.error,
        )

    def _report(self, outcome: oc.Outcome, written: Operation | None) -> None:
        """Metrics and the closing log line of the attempt."""
        job_type = self.claim.operation.job_type
        label = _OUTCOME_LABELS[type(outcome)]
        seconds = asyncio.get_running_loop().time() - self._started
        self._metrics.attempt_ended(job_type, label, seconds)
        if written is None:
            if not isinstance(outcome, oc.LeaseLost):
                self.log.warning("the attempt's outcome was refused: it no longer held its lease")
            return
        # The move itself is counted by the store's transition subscribers.
        if not isinstance(outcome, oc.Failed) and log.isEnabledFor(logging.INFO):
            self.log.info(
                "attempt ended: %s",
                label,
                extra={"state": written.state.value, "seconds": round(seconds, 3)},
            )


_OUTCOME_LABELS: dict[type, str] = {
    oc.Succeeded: "succeeded",
    oc.Failed: "failed",
    oc.Cancelled: "cancelled",
    oc.Released: "released",
    oc.LeaseLost: "lease_lost",
}
