"""--claim-ahead: jobs claimed beyond the free slots wait in the pool's local
queue, keep their leases, run in priority order as slots free, and are handed
back at once on drain; and only as many are claimed ahead as the slots are
expected to start within --claim-ahead-seconds (none before a handler has
finished, none behind handlers slower than that)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, wrappers_pb2

from lrod.app import Service
from lrod.settings import WorkerSettings
from tests.execution.support import attempts_of, wait_done
from tests.helpers import metadata, state_name, submit


@pytest.fixture
def worker_settings(
    worker_settings: WorkerSettings, request: pytest.FixtureRequest
) -> WorkerSettings:
    # An hour's wait: as many ahead as claim_ahead, once a handler has finished.
    wait = getattr(request, "param", 3600.0)
    return dataclasses.replace(worker_settings, concurrency=1, claim_ahead=4, claim_ahead_wait=wait)


async def _one_handler_done(jobs, operations, gates, took: float = 0.0) -> None:
    """A job run to its end first: the pool's mean handler time is `took`."""
    first = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="first"))
    await asyncio.wait_for(gates.started_event("first").wait(), 10)
    await asyncio.sleep(took)
    gates.gate("first").set()
    assert state_name(await wait_done(operations, first.name)) == "SUCCEEDED"


async def _queued(service: Service, count: int) -> None:
    assert service.pool is not None
    async with asyncio.timeout(20):
        while service.pool.queued_count < count:
            await asyncio.sleep(0.02)


async def test_claimed_ahead_run_by_priority(jobs, operations, gates, service) -> None:
    await _one_handler_done(jobs, operations, gates)
    await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="hold"))
    await asyncio.wait_for(gates.started_event("hold").wait(), 10)
    low = await submit(jobs, "test.noop", empty_pb2.Empty(), priority=-5)
    high = await submit(jobs, "test.noop", empty_pb2.Empty(), priority=50)
    await _queued(service, 2)
    gates.gate("hold").set()
    done_low = await wait_done(operations, low.name)
    done_high = await wait_done(operations, high.name)
    assert state_name(done_low) == state_name(done_high) == "SUCCEEDED"
    # One slot: the higher priority's attempt ended first.
    assert metadata(done_high).end_time.ToDatetime() <= metadata(done_low).end_time.ToDatetime()


async def test_drain_hands_back_the_claimed_ahead(
    jobs, operations, gates, service, database_url
) -> None:
    await _one_handler_done(jobs, operations, gates)
    await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="hold"))
    await asyncio.wait_for(gates.started_event("hold").wait(), 10)
    ahead = [await submit(jobs, "test.noop", empty_pb2.Empty()) for _ in range(3)]
    await _queued(service, 3)
    assert service.pool is not None
    await service.pool.stop(0)
    for op in ahead:
        got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
        assert state_name(got) == "QUEUED"
        assert metadata(got).attempt == 0
        assert [a.outcome for a in await attempts_of(database_url, op.name)] == ["RELEASED"]


async def test_nothing_is_claimed_ahead_before_a_handler_finished(
    jobs, operations, gates, service
) -> None:
    await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="hold"))
    await asyncio.wait_for(gates.started_event("hold").wait(), 10)
    waiting = [await submit(jobs, "test.noop", empty_pb2.Empty()) for _ in range(2)]
    await _claim_loop_looked(service)
    assert service.pool is not None
    assert service.pool.queued_count == 0
    for op in waiting:
        got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
        assert state_name(got) == "QUEUED"
    gates.gate("hold").set()
    for op in waiting:
        assert state_name(await wait_done(operations, op.name)) == "SUCCEEDED"


@pytest.mark.parametrize("worker_settings", [0.05], indirect=True)
async def test_slow_handlers_are_not_claimed_ahead_of(jobs, operations, gates, service) -> None:
    # One slot, handlers of 0.3 s: within 0.05 s the pool starts no further job.
    await _one_handler_done(jobs, operations, gates, took=0.3)
    await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="hold"))
    await asyncio.wait_for(gates.started_event("hold").wait(), 10)
    waiting = await submit(jobs, "test.noop", empty_pb2.Empty())
    await _claim_loop_looked(service)
    assert service.pool is not None
    assert service.pool.queued_count == 0
    got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=waiting.name))
    assert state_name(got) == "QUEUED"
    gates.gate("hold").set()
    assert state_name(await wait_done(operations, waiting.name)) == "SUCCEEDED"


async def _claim_loop_looked(service: Service) -> None:
    """Past two of the pool's polls (0.2 s in these tests), besides the
    wake-up each Submit sent: a claim ahead would have been made by now."""
    assert service.pool is not None
    await asyncio.sleep(2.5 * service.pool.settings.poll_interval)
