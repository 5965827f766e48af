"""--claim-ahead: jobs claimed beyond the free slots wait in the pool's local
queue, keep their leases, run in priority order as slots free, and are handed
back at once on drain."""

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
def worker_settings(worker_settings: WorkerSettings) -> WorkerSettings:
    return dataclasses.replace(worker_settings, concurrency=1, claim_ahead=4)


async def _queued(service: Service, count: int) -> None:
    assert service.pool is not None
    async with asyncio.timeout(20):
        while service.pool.queued_count < count:
            await asyncio.sleep(0.02)


async def test_claimed_ahead_run_by_priority(jobs, operations, gates, service) -> None:
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
