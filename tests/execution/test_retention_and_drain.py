"""Retention (expired operations answer NOT_FOUND, saying so) and graceful drain."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lrod.domain.names import parse_operation_name
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2, job_service_pb2_grpc
from tests.execution.support import attempts_of, start_server, start_worker, stop, wait_done
from tests.helpers import details, error_info, metadata, state_name, submit


async def _expect_not_found(call, reason: str) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == reason


async def test_expired_operation_answers_not_found_with_the_expired_reason(
    jobs, operations, service
) -> None:
    op = await submit(jobs, "test.ephemeral", empty_pb2.Empty())
    done = await wait_done(operations, op.name)
    assert metadata(done).HasField("expire_time")
    op_id = parse_operation_name(op.name)
    async with asyncio.timeout(10):  # retention 1 s, janitor every 0.2 s
        while await service.store.attempts(op_id):
            await asyncio.sleep(0.1)
    await _expect_not_found(
        operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name)),
        "OPERATION_EXPIRED",
    )
    await _expect_not_found(
        operations.WaitOperation(operations_pb2.WaitOperationRequest(name=op.name)),
        "OPERATION_EXPIRED",
    )
    await _expect_not_found(
        operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name)),
        "OPERATION_EXPIRED",
    )
    stream = jobs.WatchOperation(job_service_pb2.WatchOperationRequest(name=op.name))
    with pytest.raises(grpc.RpcError) as caught:
        async for _ in stream:
            pass
    assert error_info(caught.value).reason == "OPERATION_EXPIRED"
    listed = await operations.ListOperations(operations_pb2.ListOperationsRequest())
    assert op.name not in [o.name for o in listed.operations]
    await _expect_not_found(
        operations.GetOperation(
            operations_pb2.GetOperationRequest(name="operations/EEEEEEEEEEEEEEEEEEEEEE")
        ),
        "OPERATION_NOT_FOUND",
    )


async def test_drain_refuses_submits_reports_not_serving_and_lets_jobs_finish(
    jobs, operations, channel, service
) -> None:
    op = await submit(
        jobs,
        "examples.sleep",
        ex.SleepJob(duration=duration_pb2.Duration(nanos=800_000_000), steps=4),
    )
    async with asyncio.timeout(5):
        while (
            state_name(
                await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
            )
            != "RUNNING"
        ):
            await asyncio.sleep(0.02)
    draining = asyncio.ensure_future(service.stop(5.0))
    await asyncio.sleep(0.1)
    health = health_pb2_grpc.HealthStub(channel)
    status = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert status.status == health_pb2.HealthCheckResponse.NOT_SERVING
    with pytest.raises(grpc.RpcError) as caught:
        await submit(jobs, "test.noop", empty_pb2.Empty())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "SERVER_DRAINING"
    assert "RetryInfo" in details(caught.value)
    finished = await operations.WaitOperation(
        operations_pb2.WaitOperationRequest(name=op.name, timeout=duration_pb2.Duration(seconds=5))
    )
    assert state_name(finished) == "SUCCEEDED"
    await draining


@pytest.mark.slow
async def test_sigterm_hands_unfinished_jobs_back_at_once(database_url, tmp_path) -> None:
    server, port = await start_server(
        database_url, tmp_path / "server.log", "--drain-seconds", "0.5", "--lease-seconds", "30"
    )
    worker = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = job_service_pb2_grpc.JobServiceStub(channel)
            long = await submit(
                stub,
                "examples.sleep",
                ex.SleepJob(duration=duration_pb2.Duration(seconds=20), steps=20),
            )
            short = await submit(
                stub,
                "examples.sleep",
                ex.SleepJob(duration=duration_pb2.Duration(nanos=200_000_000), steps=1),
            )
            await asyncio.sleep(0.5)
        server.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await server.wait()
        assert server.returncode == 0
        records = await attempts_of(database_url, long.name)
        assert [r.outcome for r in records] == ["RELEASED"]
        assert [r.outcome for r in await attempts_of(database_url, short.name)] == ["SUCCEEDED"]
        # Another worker takes the released job at once, not after the 30 s lease.
        worker = await start_worker(database_url, tmp_path / "worker.log", lease=30)
        async with asyncio.timeout(10):
            while len(records := await attempts_of(database_url, long.name)) < 2:
                await asyncio.sleep(0.1)
        assert records[1].number == 1  # the released attempt did not count
        assert records[1].outcome == "RUNNING"
    finally:
        await stop(server)
        if worker is not None:
            await stop(worker)
