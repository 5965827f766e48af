"""Time limits, cancelling running jobs, coalesced progress, priorities,
delayed start."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2, wrappers_pb2
from google.rpc import code_pb2, error_details_pb2

from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2
from lrod.worker import WorkerSettings
from tests.execution.support import attempts_of, start_worker, stop, wait_done, wait_until
from tests.helpers import metadata, state_name, submit


def _seconds(value: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(int(value * 1000))
    return duration


def _reason(op: operations_pb2.Operation) -> error_details_pb2.ErrorInfo:
    info = error_details_pb2.ErrorInfo()
    assert op.error.details[0].Unpack(info)
    return info


async def test_async_job_over_its_limit_fails_with_deadline_exceeded(jobs, operations) -> None:
    op = await submit(
        jobs, "examples.sleep", ex.SleepJob(duration=_seconds(10), steps=10), timeout=_seconds(0.3)
    )
    started = time.monotonic()
    done = await wait_done(operations, op.name)
    assert time.monotonic() - started < 5
    assert state_name(done) == "FAILED"
    assert done.error.code == code_pb2.DEADLINE_EXCEEDED
    # examples.sleep does not retry timeouts: one attempt.
    assert metadata(done).attempt == 1
    assert _reason(done).reason == "JOB_TIMED_OUT"


async def test_sync_job_over_its_limit_is_stopped_and_retried(
    jobs, operations, database_url
) -> None:
    op = await submit(
        jobs,
        "examples.export_report",
        ex.ExportReportJob(range="big", rows=10_000_000),
        timeout=_seconds(0.3),
    )
    done = await wait_done(operations, op.name, seconds=40)
    assert done.error.code == code_pb2.DEADLINE_EXCEEDED
    assert _reason(done).reason == "ATTEMPTS_EXHAUSTED"
    assert _reason(done).metadata["last_reason"] == "JOB_TIMED_OUT"
    records = await attempts_of(database_url, op.name)
    assert [r.outcome for r in records] == ["QUEUED", "QUEUED", "FAILED"]


async def test_handler_ignoring_cancel_is_cancelled_after_the_grace(jobs, operations) -> None:
    op = await submit(jobs, "test.stubborn", empty_pb2.Empty())
    await wait_until(operations, op.name, lambda o: state_name(o) == "RUNNING")
    started = time.monotonic()
    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
    done = await wait_done(operations, op.name)
    assert time.monotonic() - started < 3  # grace is 0.5 s in tests
    assert done.error.code == code_pb2.CANCELLED
    assert metadata(done).attempt == 1


class TestAcrossProcesses:
    @pytest.fixture
    def worker_settings(self) -> WorkerSettings:
        return WorkerSettings(concurrency=0)

    @pytest.mark.slow
    async def test_cancel_reaches_a_worker_in_another_process_within_a_heartbeat(
        self, jobs, operations, database_url, tmp_path
    ) -> None:
        lease = 3.0  # heartbeats every second
        worker = await start_worker(database_url, tmp_path / "worker.log", lease=lease)
        try:
            op = await submit(jobs, "examples.sleep", ex.SleepJob(duration=_seconds(30), steps=300))
            await wait_until(operations, op.name, lambda o: metadata(o).progress.completed > 0)
            started = time.monotonic()
            await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
            # GetOperation in a loop: on SQLite this API process is not told of
            # the other process's writes, so WaitOperation would add its cap.
            done = await wait_until(operations, op.name, lambda o: o.done)
            elapsed = time.monotonic() - started
        finally:
            await stop(worker)
        assert done.error.code == code_pb2.CANCELLED
        assert elapsed < lease / 3 + 1.0
        outcomes = [r.outcome for r in await attempts_of(database_url, op.name)]
        assert outcomes == ["CANCELLED"]

    @pytest.mark.slow
    async def test_watch_hears_a_worker_in_another_process(
        self, jobs, database_url, tmp_path
    ) -> None:
        worker = await start_worker(database_url, tmp_path / "worker.log")
        try:
            op = await submit(jobs, "examples.sleep", ex.SleepJob(duration=_seconds(0.6), steps=3))
            seen = []
            async with asyncio.timeout(20):
                async for response in jobs.WatchOperation(
                    job_service_pb2.WatchOperationRequest(name=op.name)
                ):
                    seen.append((time.time(), response.operation))
        finally:
            await stop(worker)
        received, last = seen[-1]
        assert last.done
        assert state_name(last) == "SUCCEEDED"
        assert "RUNNING" in [state_name(o) for _, o in seen]
        # SQLite: the data_version watch (every 0.5 s); PostgreSQL: NOTIFY.
        lag = received - metadata(last).end_time.ToMicroseconds() / 1e6
        assert lag < (1.5 if database_url.startswith("sqlite") else 0.25), lag


async def test_progress_writes_are_coalesced(jobs, operations) -> None:
    op = await submit(jobs, "test.chatty", wrappers_pb2.Int32Value(value=5000))
    done = await wait_done(operations, op.name)
    meta = metadata(done)
    assert (meta.progress.completed, meta.progress.total, meta.progress.stage) == (
        5000,
        5000,
        "rows",
    )
    # Each write bumps the version; 5000 reports must not mean 5000 writes.
    seen = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert seen.done
    from lrod.domain.names import parse_operation_name

    del parse_operation_name


async def test_higher_priority_runs_first(jobs, operations, gates, service) -> None:
    # One worker slot, held by a gate job while the others queue up.
    blocker = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="hold"))
    await asyncio.wait_for(gates.started_event("hold").wait(), 5)
    filler = [
        await submit(jobs, "test.gate", wrappers_pb2.StringValue(value=f"f{i}")) for i in range(3)
    ]
    low = await submit(jobs, "test.noop", empty_pb2.Empty(), priority=-5)
    high = await submit(jobs, "test.noop", empty_pb2.Empty(), priority=50)
    for i in range(3):
        gates.gate(f"f{i}").set()
    gates.gate("hold").set()
    done_low = await wait_done(operations, low.name)
    done_high = await wait_done(operations, high.name)
    for op in (blocker, *filler):
        await wait_done(operations, op.name)
    assert metadata(done_high).start_time.ToDatetime() <= metadata(done_low).start_time.ToDatetime()


async def test_scheduled_job_never_starts_early(jobs, operations) -> None:
    at = datetime.now(UTC) + timedelta(seconds=1)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(at)
    op = await submit(jobs, "test.noop", empty_pb2.Empty(), schedule_time=stamp)
    queued = metadata(op)
    assert queued.next_attempt_time == stamp
    done = await wait_done(operations, op.name)
    started = metadata(done).start_time.ToDatetime(tzinfo=UTC)
    assert started >= at
    assert started - at < timedelta(seconds=2)
