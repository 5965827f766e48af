"""Retries: temporary failures back off and retry; attempts run out; history."""

from __future__ import annotations

import itertools
from datetime import timedelta

from google.protobuf import empty_pb2
from google.rpc import code_pb2, error_details_pb2

from lrod.domain.retry import Backoff
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2
from tests.execution.support import attempts_of, wait_done
from tests.helpers import metadata, state_name, submit

# tests.jobs: test.always_temporary backs off from 100 ms to at most 400 ms.
BACKOFF = Backoff(minimum=timedelta(milliseconds=100), maximum=timedelta(milliseconds=400))
# Timer and claim latency on a loaded 2-core machine.
SLACK = 0.5


async def test_flaky_beyond_max_attempts_fails_with_exhausted_reason(
    jobs, operations, database_url
) -> None:
    op = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=10))
    done = await wait_done(operations, op.name)
    assert state_name(done) == "FAILED"
    assert done.error.code == code_pb2.UNAVAILABLE
    assert done.error.message == "Temporary failure 5 of 10."
    info = error_details_pb2.ErrorInfo()
    assert done.error.details[0].Unpack(info)
    assert info.reason == "ATTEMPTS_EXHAUSTED"
    assert info.metadata["last_reason"] == "TEMPORARY_FAILURE_REQUESTED"
    assert metadata(done).attempt == metadata(done).max_attempts == 5
    # The last attempt's own error, not the verdict on the operation.
    last = error_details_pb2.ErrorInfo()
    assert metadata(done).last_attempt_error.details[0].Unpack(last)
    assert last.reason == "TEMPORARY_FAILURE_REQUESTED"
    records = await attempts_of(database_url, op.name)
    assert [r.outcome for r in records] == ["QUEUED"] * 4 + ["FAILED"]
    assert all("RetryableJobError" in (r.internal_error or "") for r in records)


async def test_backoff_gaps_stay_within_bounds(jobs, operations, database_url) -> None:
    op = await submit(jobs, "test.always_temporary", empty_pb2.Empty())
    done = await wait_done(operations, op.name)
    assert state_name(done) == "FAILED"
    records = await attempts_of(database_url, op.name)
    assert [r.number for r in records] == [1, 2, 3, 4]
    for earlier, later in itertools.pairwise(records):
        assert earlier.end_time is not None
        gap = (later.start_time - earlier.end_time).total_seconds()
        ceiling = BACKOFF.ceiling(earlier.number).total_seconds()
        assert BACKOFF.minimum.total_seconds() <= gap <= ceiling + SLACK, (earlier.number, gap)
    ceilings = [BACKOFF.ceiling(n).total_seconds() for n in (1, 2, 3)]
    assert ceilings == sorted(ceilings)
    assert ceilings[0] < ceilings[-1]


async def test_metadata_shows_the_retry_while_it_waits(jobs) -> None:
    op = await submit(jobs, "test.always_temporary", empty_pb2.Empty())
    waiting = [
        r.operation
        async for r in jobs.WatchOperation(job_service_pb2.WatchOperationRequest(name=op.name))
        if state_name(r.operation) == "QUEUED" and metadata(r.operation).attempt > 0
    ]
    assert waiting, "no QUEUED-after-failure state was streamed"
    meta = metadata(waiting[0])
    assert meta.HasField("next_attempt_time")
    assert meta.last_attempt_error.code == code_pb2.UNAVAILABLE
    assert meta.last_attempt_error.message.startswith("Still unavailable")
    assert not waiting[0].HasField("error")


async def test_declared_retryable_exception_is_retried_without_leaking(
    jobs, operations, database_url
) -> None:
    op = await submit(jobs, "test.connection_flaky", empty_pb2.Empty())
    done = await wait_done(operations, op.name)
    assert state_name(done) == "SUCCEEDED"
    meta = metadata(done)
    assert meta.attempt == 2
    assert meta.last_attempt_error.code == code_pb2.UNAVAILABLE
    assert "10.0.0.7" not in str(done)
    records = await attempts_of(database_url, op.name)
    assert "10.0.0.7" in (records[0].internal_error or "")


async def test_permanent_failure_is_not_retried(jobs, operations, database_url) -> None:
    op = await submit(jobs, "examples.flaky", ex.FlakyJob(permanent=True, fail_times=3))
    done = await wait_done(operations, op.name)
    assert done.error.code == code_pb2.FAILED_PRECONDITION
    assert [r.outcome for r in await attempts_of(database_url, op.name)] == ["FAILED"]
