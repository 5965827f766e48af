"""WaitOperation and WatchOperation: prompt wake-ups without polling."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, empty_pb2, wrappers_pb2
from sqlalchemy import event

from lrod.app import Service
from lrod.examples.v1 import examples_pb2 as ex
from lrod.manager import ManagerSettings
from lrod.v1 import job_service_pb2
from tests.conftest import MAX_WAIT
from tests.helpers import error_info, metadata, state_name, submit


def _wait_request(name: str, seconds: float | None = None) -> operations_pb2.WaitOperationRequest:
    request = operations_pb2.WaitOperationRequest(name=name)
    if seconds is not None:
        request.timeout.FromNanoseconds(int(seconds * 1e9))
    return request


# Timing on a shared 2-core machine: no bound here is tighter than half of a
# configured timer that would have ended the call had the behaviour under
# test not (LONG: a cap no test reaches), and lower bounds are the timers
# themselves, so that a loaded machine only makes calls later, never wrong.
LONG = 40.0
LONG_CAP = pytest.mark.parametrize(
    "manager_settings", [ManagerSettings(max_wait=LONG)], ids=["long-cap"]
)


@LONG_CAP
async def test_wait_returns_at_once_when_done(jobs, operations) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty())
    done = await operations.WaitOperation(_wait_request(op.name, LONG))
    assert done.done
    started = time.monotonic()
    again = await operations.WaitOperation(_wait_request(op.name, LONG))
    # Nothing will change it again: had it waited, only the timer would end it.
    assert time.monotonic() - started < LONG / 2
    assert again == done


@LONG_CAP
async def test_wait_honours_its_timeout(jobs, operations) -> None:
    op = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="t1"))
    started = time.monotonic()
    latest = await operations.WaitOperation(_wait_request(op.name, 0.3))
    elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < LONG / 2  # its own timeout ended it, not the cap
    assert not latest.done
    assert state_name(latest) in ("QUEUED", "RUNNING")


# The server answers `deadline_margin` before the caller's deadline; the
# default (50 ms) is less than a loaded machine can delay an answer by, and
# what is tested is that the deadline is honoured, not how closely.
@pytest.mark.parametrize("manager_settings", [ManagerSettings(max_wait=LONG, deadline_margin=1.0)])
async def test_wait_honours_the_rpc_deadline(jobs, operations) -> None:
    op = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="t2"))
    started = time.monotonic()
    # Past the deadline the call would fail with DEADLINE_EXCEEDED.
    latest = await operations.WaitOperation(_wait_request(op.name), timeout=2.0)
    assert time.monotonic() - started >= 0.5  # it waited, up to the deadline less the margin
    assert not latest.done


async def test_wait_is_capped(jobs, operations) -> None:
    op = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="t3"))
    started = time.monotonic()
    latest = await operations.WaitOperation(_wait_request(op.name, LONG))
    elapsed = time.monotonic() - started
    assert MAX_WAIT - 0.1 <= elapsed < LONG / 2
    assert not latest.done


@LONG_CAP
async def test_wait_wakes_on_the_change_without_polling(
    jobs, operations, gates, service: Service
) -> None:
    op = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="t4"))
    await asyncio.wait_for(gates.started_event("t4").wait(), 5)
    reads: list[float] = []
    engine = service.store._db.read_engine

    def count(_conn, _cursor, statement: str, *_args) -> None:
        # Reads on behalf of a caller are scoped by owner; the workers'
        # claims and the health check's SELECT 1 are not.
        if "operations.owner =" in statement:
            reads.append(time.monotonic())

    # GetOperation's reads bypass the engine (SQLite inline, asyncpg directly).
    inline = service.store._db.inline or service.store._db.direct
    event.listen(engine, "before_cursor_execute", count)
    if inline is not None:
        inline.trace(lambda statement: count(None, None, statement))
    try:
        waiter = asyncio.ensure_future(operations.WaitOperation(_wait_request(op.name, LONG)))
        await asyncio.sleep(1.0)  # a window in which nothing changes
        reads_while_idle = len(reads)
        opened = time.monotonic()
        gates.gate("t4").set()
        done = await waiter
        woke_after = time.monotonic() - opened
    finally:
        event.remove(engine, "before_cursor_execute", count)
        if inline is not None:
            inline.trace(None)
    assert done.done
    # Woken by the change: only the LONG timer would have ended it otherwise.
    assert woke_after < LONG / 2
    # One read when the wait started; none while nothing changed.
    assert reads_while_idle == 1


async def test_wait_of_unknown_and_malformed_names(operations) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await operations.WaitOperation(_wait_request("operations/CCCCCCCCCCCCCCCCCCCCCC", 1))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as caught:
        await operations.WaitOperation(_wait_request("nope", 1))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    request = _wait_request("operations/CCCCCCCCCCCCCCCCCCCCCC")
    request.timeout.CopyFrom(duration_pb2.Duration(seconds=-5))
    with pytest.raises(grpc.RpcError) as caught:
        await operations.WaitOperation(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason


async def test_watch_streams_every_state_and_progress_then_ends(jobs) -> None:
    op = await submit(
        jobs,
        "examples.sleep",
        ex.SleepJob(duration=duration_pb2.Duration(nanos=800_000_000), steps=4),
    )
    seen = [
        response.operation
        async for response in jobs.WatchOperation(
            job_service_pb2.WatchOperationRequest(name=op.name)
        )
    ]
    states = [state_name(o) for o in seen]
    assert states[0] in ("QUEUED", "RUNNING")
    assert states[-1] == "SUCCEEDED"
    assert seen[-1].done
    assert all(not o.done for o in seen[:-1])
    assert "RUNNING" in states
    progress = [metadata(o).progress.completed for o in seen if state_name(o) == "RUNNING"]
    assert progress == sorted(progress)
    assert len(set(progress)) >= 3, f"progress updates were not streamed: {progress}"
    assert metadata(seen[-1]).progress.completed == 4


async def test_watch_of_done_operation_sends_it_once(jobs, operations) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty())
    await operations.WaitOperation(_wait_request(op.name, 5))
    seen = [
        r async for r in jobs.WatchOperation(job_service_pb2.WatchOperationRequest(name=op.name))
    ]
    assert len(seen) == 1
    assert seen[0].operation.done


async def test_watch_of_unknown_is_not_found(jobs) -> None:
    stream = jobs.WatchOperation(
        job_service_pb2.WatchOperationRequest(name="operations/DDDDDDDDDDDDDDDDDDDDDD")
    )
    with pytest.raises(grpc.RpcError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "OPERATION_NOT_FOUND"


async def test_watch_shows_retries_as_attempts(jobs) -> None:
    op = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=2))
    seen = [
        r.operation
        async for r in jobs.WatchOperation(job_service_pb2.WatchOperationRequest(name=op.name))
    ]
    attempts = [metadata(o).attempt for o in seen]
    assert attempts == sorted(attempts)
    assert attempts[-1] == 3
    assert seen[-1].done
