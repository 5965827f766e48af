"""grpc.health.v1: every service reports whether the database answers, and
Watch streams the changes as a PostgreSQL server stops and comes back."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lrod.api.server import SERVICES
from lrod.app import Service, Settings
from lrod.v1 import job_service_pb2_grpc
from tests.helpers import details, error_info, submit
from tests.jobs import Gates, build_registry

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
EVERYTHING = ("", *SERVICES)


async def _statuses(health: health_pb2_grpc.HealthStub) -> dict[str, int]:
    return {
        name: (await health.Check(health_pb2.HealthCheckRequest(service=name))).status
        for name in EVERYTHING
    }


async def test_every_service_reports_serving(channel, service) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    assert SERVICES == ("lrod.v1.JobService", "google.longrunning.Operations")
    assert await _statuses(health) == dict.fromkeys(EVERYTHING, SERVING)
    with pytest.raises(grpc.RpcError) as caught:
        await health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert service.metrics.registry.get_sample_value("lrod_database_up") == 1


async def _next_status(stream: grpc.aio.UnaryStreamCall) -> int:
    async with asyncio.timeout(15):
        response = await stream.read()
    assert response is not grpc.aio.EOF, "the Watch stream ended"
    return int(response.status)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_health_flips_when_postgresql_stops_and_comes_back(own_cluster) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        database_url=own_cluster.url(),
        workers=None,
        health_interval=0.1,
        janitor_interval=0.5,
    )
    service = Service(settings, build_registry(Gates()))
    await service.start()
    up = service.metrics.registry.get_sample_value
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            watches = {
                name: health.Watch(health_pb2.HealthCheckRequest(service=name))
                for name in EVERYTHING
            }
            for stream in watches.values():
                assert await _next_status(stream) == SERVING
            assert up("lrod_database_up") == 1

            await asyncio.to_thread(own_cluster.stop)
            for stream in watches.values():
                assert await _next_status(stream) == NOT_SERVING
            assert await _statuses(health) == dict.fromkeys(EVERYTHING, NOT_SERVING)
            assert up("lrod_database_up") == 0
            with pytest.raises(grpc.RpcError) as caught:
                await submit(jobs, "test.noop", empty_pb2.Empty())
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(caught.value).reason == "DATABASE_UNAVAILABLE"
            assert "RetryInfo" in details(caught.value)

            await asyncio.to_thread(own_cluster.restart_after_stop)
            for stream in watches.values():
                assert await _next_status(stream) == SERVING
            assert await _statuses(health) == dict.fromkeys(EVERYTHING, SERVING)
            assert up("lrod_database_up") == 1
            op = await submit(jobs, "test.noop", empty_pb2.Empty())
            assert op.name.startswith("operations/")
            for stream in watches.values():
                stream.cancel()
    finally:
        await service.stop(1.0)
