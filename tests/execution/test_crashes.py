"""Workers that die or stall: rescue after the lease, and fencing of late writes."""

from __future__ import annotations

import asyncio
import signal

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2

from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2_grpc
from lrod.worker import WorkerSettings
from tests.execution.support import (
    attempts_of,
    start_server,
    start_worker,
    stop,
    wait_done,
    wait_until,
)
from tests.helpers import metadata, state_name, submit

pytestmark = pytest.mark.slow


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return WorkerSettings(concurrency=0)  # the API only: jobs run in the subprocesses


def _sleep_job(seconds: float, steps: int) -> ex.SleepJob:
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(int(seconds * 1000))
    return ex.SleepJob(duration=duration, steps=steps)


async def test_killed_worker_job_completes_on_another(
    jobs, operations, database_url, tmp_path
) -> None:
    first = await start_worker(database_url, tmp_path / "first.log")
    second = None
    try:
        op = await submit(jobs, "examples.sleep", _sleep_job(3, 30))
        await wait_until(operations, op.name, lambda o: metadata(o).progress.completed >= 2)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        second = await start_worker(database_url, tmp_path / "second.log")
        done = await wait_done(operations, op.name)
    finally:
        await stop(first)
        if second is not None:
            await stop(second)
    assert state_name(done) == "SUCCEEDED"
    assert metadata(done).attempt == 2
    outcomes = [(a.number, a.outcome) for a in await attempts_of(database_url, op.name)]
    assert outcomes == [(1, "LEASE_EXPIRED"), (2, "SUCCEEDED")]


# SQLite has one write lock for the whole file: a worker frozen inside a write
# transaction (a heartbeat) would stall every writer until it resumes.
# PostgreSQL ends such a session (idle_in_transaction_session_timeout) and
# rescue proceeds. So the SIGSTOP scenario runs on PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_stalled_worker_cannot_overwrite_the_newer_attempt(
    jobs, operations, database_url, tmp_path
) -> None:
    stalled_log = tmp_path / "stalled.log"
    stalled = await start_worker(database_url, stalled_log)
    rescuer = None
    try:
        op = await submit(jobs, "examples.sleep", _sleep_job(2.5, 25))
        await wait_until(operations, op.name, lambda o: metadata(o).progress.completed >= 2)
        stalled.send_signal(signal.SIGSTOP)
        rescuer = await start_worker(database_url, tmp_path / "rescuer.log")
        await wait_until(operations, op.name, lambda o: metadata(o).attempt == 2, seconds=20)
        stalled.send_signal(signal.SIGCONT)
        done = await wait_done(operations, op.name)
        # Until the resumed worker has found its lease gone (its heartbeat or
        # its finishing write refused), then once more.
        async with asyncio.timeout(30):
            while not _knows_it_lost(stalled_log.read_text()):
                await asyncio.sleep(0.05)
        after = await wait_done(operations, op.name)
    finally:
        await stop(stalled)
        if rescuer is not None:
            await stop(rescuer)
    assert state_name(done) == "SUCCEEDED"
    assert after == done, "the stalled worker changed the operation after it resumed"
    assert metadata(done).attempt == 2
    outcomes = [(a.number, a.outcome) for a in await attempts_of(database_url, op.name)]
    assert outcomes == [(1, "LEASE_EXPIRED"), (2, "SUCCEEDED")]
    assert _knows_it_lost(stalled_log.read_text())


def _knows_it_lost(log: str) -> bool:
    return "lease lost" in log or "refused a stale write" in log


async def test_killed_server_with_a_handed_off_job_is_rescued_by_another_worker(
    jobs, operations, database_url, tmp_path
) -> None:
    """A Submit handed off to `lrod serve`'s own idle workers holds a lease
    like a claimed job: kill -9 the server, and the lease expires and
    another worker takes the job."""
    server, port = await start_server(
        database_url,
        tmp_path / "server.log",
        "--hand-off",
        "--lease-seconds",
        "1.5",
        "--poll-seconds",
        "0.2",
    )
    worker = None
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            served = job_service_pb2_grpc.JobServiceStub(channel)
            # Handed off once the server's pool has found the queue empty.
            async with asyncio.timeout(30):
                while True:
                    op = await submit(served, "examples.sleep", _sleep_job(3, 30))
                    if state_name(op) == "RUNNING":
                        break
                    await operations.CancelOperation(
                        operations_pb2.CancelOperationRequest(name=op.name)
                    )
                    await asyncio.sleep(0.1)
        assert metadata(op).attempt == 1
        await wait_until(operations, op.name, lambda o: metadata(o).progress.completed >= 2)
        server.send_signal(signal.SIGKILL)
        await server.wait()
        worker = await start_worker(database_url, tmp_path / "worker.log")
        done = await wait_done(operations, op.name)
    finally:
        await stop(server)
        if worker is not None:
            await stop(worker)
    assert state_name(done) == "SUCCEEDED"
    assert metadata(done).attempt == 2
    outcomes = [(a.number, a.outcome) for a in await attempts_of(database_url, op.name)]
    assert outcomes == [(1, "LEASE_EXPIRED"), (2, "SUCCEEDED")]
