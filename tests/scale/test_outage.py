"""A PostgreSQL outage: UNAVAILABLE (never INTERNAL) while it is down, recovery
by itself when it is back, and no acknowledged operation lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from lrod.app import Service, Settings
from lrod.manager import ManagerSettings
from lrod.store.pg_notify import NotificationListener
from lrod.testing.postgres import ThrowawayCluster
from lrod.v1 import job_service_pb2_grpc
from lrod.worker import WorkerSettings
from tests.execution.support import wait_done
from tests.helpers import details, error_info, state_name, submit
from tests.jobs import Gates, build_registry

pytestmark = pytest.mark.slow


@pytest.fixture
async def outage_service(own_cluster: ThrowawayCluster) -> AsyncIterator[Service]:
    settings = Settings(
        address="127.0.0.1:0",
        database_url=own_cluster.url(),
        workers=WorkerSettings(concurrency=2, lease=timedelta(seconds=3), poll_interval=0.2),
        manager=ManagerSettings(max_wait=2.0),
    )
    service = Service(settings, build_registry(Gates()))
    await service.start()
    try:
        yield service
    finally:
        await service.stop(1.0)


async def _until_ok(call, seconds: float = 30):
    async with asyncio.timeout(seconds):
        while True:
            try:
                return await call()
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.2)


async def test_outage_answers_unavailable_and_recovers(
    outage_service: Service, own_cluster: ThrowawayCluster
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{outage_service.port}") as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        operations = operations_pb2_grpc.OperationsStub(channel)
        before = [await submit(jobs, "test.noop", empty_pb2.Empty()) for _ in range(5)]
        for op in before:
            assert state_name(await wait_done(operations, op.name)) == "SUCCEEDED"

        await asyncio.to_thread(own_cluster.stop)
        for call in (
            lambda: operations.GetOperation(
                operations_pb2.GetOperationRequest(name=before[0].name)
            ),
            lambda: submit(jobs, "test.noop", empty_pb2.Empty()),
            lambda: operations.ListOperations(operations_pb2.ListOperationsRequest()),
        ):
            with pytest.raises(grpc.RpcError) as caught:
                await call()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(caught.value).reason == "DATABASE_UNAVAILABLE"
            assert "RetryInfo" in details(caught.value)
        await asyncio.sleep(1.0)  # the worker loop and listener keep failing meanwhile

        await asyncio.to_thread(own_cluster.restart_after_stop)
        got = await _until_ok(
            lambda: operations.GetOperation(operations_pb2.GetOperationRequest(name=before[0].name))
        )
        assert state_name(got) == "SUCCEEDED"
        after = await _until_ok(lambda: submit(jobs, "test.noop", empty_pb2.Empty()))
        assert state_name(await wait_done(operations, after.name)) == "SUCCEEDED"
        listed = await operations.ListOperations(
            operations_pb2.ListOperationsRequest(page_size=100)
        )
        assert {op.name for op in before} | {after.name} <= {op.name for op in listed.operations}
    assert isinstance(outage_service.notifications, NotificationListener)
    async with asyncio.timeout(10):
        await outage_service.notifications.connected.wait()
