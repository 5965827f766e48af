"""Many processes on one PostgreSQL: two API servers without workers, two
worker processes, 500 jobs, one worker killed mid-run."""

from __future__ import annotations

import asyncio
import signal

import grpc
import psycopg
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2

from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2_grpc
from tests.execution.support import start_server, start_worker, stop
from tests.helpers import metadata, submit

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

JOBS = 200  # enough that the kill lands mid-run, with jobs held


def _job(millis: int) -> ex.SleepJob:
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(millis)
    return ex.SleepJob(duration=duration, steps=1)


def _counts(url: str) -> tuple[dict[str, int], list[int]]:
    with psycopg.connect(url) as conn:
        states = dict(
            conn.execute("SELECT state, count(*) FROM operations GROUP BY state").fetchall()
        )
        successes = [
            r[0]
            for r in conn.execute(
                "SELECT count(*) FILTER (WHERE a.outcome = 'SUCCEEDED') FROM operations o "
                "LEFT JOIN attempts a ON a.operation_id = o.id GROUP BY o.id"
            )
        ]
    return states, successes


def _held_by(url: str, pid: int) -> bool:
    """Whether the worker process `pid` holds a running job (worker ids are
    host:pid:random)."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM operations WHERE state = 'RUNNING' AND lease_owner LIKE %s",
            (f"%:{pid}:%",),
        ).fetchone()
    return row is not None and row[0] > 0


async def test_servers_and_workers_share_one_database(postgres_url, tmp_path) -> None:
    processes: list[asyncio.subprocess.Process] = []
    try:
        # All four start at once (each start is mostly the interpreter's).
        workers = [
            await start_worker(postgres_url, tmp_path / f"worker{i}.log", lease=2) for i in range(2)
        ]
        processes += workers
        started = await asyncio.gather(
            *[
                start_server(postgres_url, tmp_path / f"server{i}.log", "--concurrency", "0")
                for i in range(2)
            ],
            return_exceptions=True,
        )
        processes += [s[0] for s in started if not isinstance(s, BaseException)]
        for outcome in started:
            if isinstance(outcome, BaseException):
                raise outcome
        (_, port_a), (_, port_b) = started
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port_a}") as a,
            grpc.aio.insecure_channel(f"127.0.0.1:{port_b}") as b,
        ):
            stubs = [job_service_pb2_grpc.JobServiceStub(a), job_service_pb2_grpc.JobServiceStub(b)]
            ops_a = operations_pb2_grpc.OperationsStub(a)
            limit = asyncio.Semaphore(32)

            async def one(i: int) -> str:
                async with limit:
                    return (await submit(stubs[i % 2], "examples.sleep", _job(100))).name

            names = await asyncio.gather(*[one(i) for i in range(JOBS)])
            assert len(set(names)) == JOBS

            # Kill one worker while it holds jobs, once a third are done.
            async with asyncio.timeout(60):
                while _counts(postgres_url)[0].get("SUCCEEDED", 0) < JOBS // 3 or not _held_by(
                    postgres_url, workers[0].pid
                ):
                    await asyncio.sleep(0.05)
            workers[0].send_signal(signal.SIGKILL)
            await workers[0].wait()

            async with asyncio.timeout(90):
                while _counts(postgres_url)[0].get("SUCCEEDED", 0) < JOBS:
                    await asyncio.sleep(0.2)
            states, successes = _counts(postgres_url)
            assert states == {"SUCCEEDED": JOBS}
            assert successes == [1] * JOBS, "every job must succeed exactly once"

            # A wait held on server A wakes when a worker in another process
            # finishes a job submitted through server B: it returns the done
            # operation, not its latest state at the timeout. (How soon it wakes
            # is a benchmark figure, not a test: bench/latency.py.)
            for _ in range(3):
                op = await submit(stubs[1], "examples.sleep", _job(300))
                done = await ops_a.WaitOperation(
                    operations_pb2.WaitOperationRequest(
                        name=op.name, timeout=duration_pb2.Duration(seconds=30)
                    )
                )
                assert done.done
                assert metadata(done).state == metadata(done).State.SUCCEEDED
    finally:
        for process in processes:
            await stop(process)
    with psycopg.connect(postgres_url) as conn:
        lost = conn.execute(
            "SELECT count(*) FROM attempts WHERE outcome = 'LEASE_EXPIRED'"
        ).fetchone()
    assert lost is not None
    assert lost[0] >= 1, "the killed worker's jobs were rescued"
