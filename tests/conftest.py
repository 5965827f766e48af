"""Fixtures: a real lrod server on 127.0.0.1:0 over a real database (a SQLite
file, and a real PostgreSQL server), and stubs on a real channel.

PostgreSQL: LROD_TEST_POSTGRES_URL names a server to use (its user must be
allowed to create databases); otherwise the suite starts a throwaway cluster.
With CI set, a PostgreSQL that cannot be had fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from google.longrunning import operations_pb2_grpc

from lrod.app import Service, Settings
from lrod.manager import ManagerSettings
from lrod.store.migrate import upgrade
from lrod.testing.postgres import PostgresUnavailable, ThrowawayCluster, start_cluster
from lrod.v1 import job_service_pb2_grpc
from lrod.worker import WorkerSettings
from tests.jobs import Gates, build_registry

MAX_WAIT = 2.0


TEMPLATE = "lrod_template"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[tuple[str, ThrowawayCluster | None]]:
    """A PostgreSQL admin URL, and the cluster if this session started it."""
    given = os.environ.get("LROD_TEST_POSTGRES_URL")
    if given:
        yield given, None
        return
    try:
        cluster = start_cluster()
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {error}")
        pytest.skip(f"no PostgreSQL here: {error}")
    try:
        yield cluster.url(), cluster
    finally:
        cluster.remove()


def _admin(url: str, *statements: str) -> None:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def _database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def postgres_template(postgres_server: tuple[str, ThrowawayCluster | None]) -> str:
    """A database with the schema migrated once; each test copies it."""
    admin_url, _ = postgres_server
    _admin(
        admin_url, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {TEMPLATE}"
    )
    upgrade(_database(admin_url, TEMPLATE))
    return admin_url


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    name = f"lrod_test_{secrets.token_hex(6)}"
    _admin(postgres_template, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    try:
        yield _database(postgres_template, name)
    finally:
        _admin(postgres_template, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
async def own_cluster() -> AsyncIterator[ThrowawayCluster]:
    """A PostgreSQL cluster of this test's own, since it is stopped (the
    suite's cluster is shared)."""
    try:
        cluster = await asyncio.to_thread(start_cluster)
    except PostgresUnavailable as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {error}")
        pytest.skip(f"no PostgreSQL here: {error}")
    try:
        yield cluster
    finally:
        await asyncio.to_thread(cluster.remove)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'lrod.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


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
def manager_settings() -> ManagerSettings:
    """The service's manager settings (a test may parametrize this name)."""
    return ManagerSettings(max_wait=MAX_WAIT)


@pytest.fixture
async def service(
    database_url: str,
    gates: Gates,
    worker_settings: WorkerSettings,
    manager_settings: ManagerSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Service]:
    monkeypatch.setenv("LROD_EXPORT_DIR", str(tmp_path / "exports"))
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=worker_settings,
        manager=manager_settings,
        janitor_interval=0.2,
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
