"""Fixtures: a real lrod server on 127.0.0.1:0 over a real SQLite file, and
stubs on a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2_grpc

from lrod.app import Service, Settings
from lrod.manager import ManagerSettings
from lrod.v1 import job_service_pb2_grpc
from lrod.worker import WorkerSettings
from tests.jobs import Gates, build_registry

MAX_WAIT = 2.0


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lrod.db'}"


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return WorkerSettings(
        concurrency=4,
        lease=timedelta(seconds=5),
        poll_interval=0.2,
        progress_interval=0.05,
        cancel_grace=0.5,
        drain_grace=2.0,
    )


@pytest.fixture
async def service(
    database_url: str,
    gates: Gates,
    worker_settings: WorkerSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Service]:
    monkeypatch.setenv("LROD_EXPORT_DIR", str(tmp_path / "exports"))
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=worker_settings,
        manager=ManagerSettings(max_wait=MAX_WAIT),
    )
    running = Service(settings, build_registry(gates))
    await running.start()
    try:
        yield running
    finally:
        for gate in gates.gates.values():
            gate.set()
        await running.stop(1.0)


@pytest.fixture
async def channel(service: Service) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as opened:
        yield opened


@pytest.fixture
def jobs(channel: grpc.aio.Channel) -> job_service_pb2_grpc.JobServiceStub:
    return job_service_pb2_grpc.JobServiceStub(channel)


@pytest.fixture
def operations(channel: grpc.aio.Channel) -> operations_pb2_grpc.OperationsStub:
    return operations_pb2_grpc.OperationsStub(channel)
