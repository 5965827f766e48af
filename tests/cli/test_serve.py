"""The real `lrod` CLI in subprocesses: serve, db upgrade, attempts, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2

from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2_grpc
from tests.helpers import state_name, submit

pytestmark = pytest.mark.slow

LROD = [sys.executable, "-m", "lrod"]


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "LROD_DATABASE_URL": database_url,
        "LROD_EXPORT_DIR": str(tmp_path / "exports"),
        "LROD_ADDRESS": "127.0.0.1:0",
    }


async def _start(
    database_url: str, tmp_path: Path, *args: str
) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        *LROD,
        "serve",
        *args,
        env=_env(database_url, tmp_path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    async with asyncio.timeout(30):
        while True:
            line = (await process.stderr.readline()).decode()
            assert line, "lrod serve exited before serving"
            found = re.search(r"serving on port (\d+)", line)
            if found:
                return process, int(found.group(1))


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_serve_runs_jobs_and_drains_on_sigterm(database_url, tmp_path) -> None:
    process, port = await _start(database_url, tmp_path, "--drain-seconds", "5")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            op = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=1))
            done = await operations.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=op.name, timeout=duration_pb2.Duration(seconds=20)
                )
            )
            assert state_name(done) == "SUCCEEDED"
            running = await submit(
                jobs,
                "examples.sleep",
                ex.SleepJob(duration=duration_pb2.Duration(nanos=500_000_000), steps=5),
            )
            await asyncio.sleep(0.2)
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                await process.wait()
        assert process.returncode == 0
        # The job running at SIGTERM finished within the grace period.
        code, out, _ = await _run(*LROD, "attempts", running.name, env=_env(database_url, tmp_path))
        assert code == 0
        assert "SUCCEEDED" in out
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_attempts_shows_internal_errors_to_operators(database_url, tmp_path) -> None:
    process, port = await _start(database_url, tmp_path)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            jobs = job_service_pb2_grpc.JobServiceStub(channel)
            operations = operations_pb2_grpc.OperationsStub(channel)
            op = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=2))
            await operations.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=op.name, timeout=duration_pb2.Duration(seconds=20)
                )
            )
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await process.wait()
    code, out, _ = await _run(*LROD, "attempts", op.name, env=_env(database_url, tmp_path))
    assert code == 0
    lines = [line for line in out.splitlines() if line.startswith("#")]
    # A failed attempt that was retried says so (the job went back to QUEUED).
    assert [line.split()[1] for line in lines] == ["RETRIED", "RETRIED", "SUCCEEDED"]
    assert "RetryableJobError: Temporary failure 1 of 2." in out


async def test_db_upgrade_creates_the_schema(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    env = os.environ | {"LROD_DATABASE_URL": url}
    said = []
    for _ in range(2):  # and a second run is a no-op
        code, out, err = await _run(*LROD, "db", "upgrade", env=env)
        assert code == 0, err
        assert "alembic" not in err  # no INFO lines from alembic
        said.append(out.strip())
    assert said[0].startswith("database upgraded from revision none to ")
    assert said[1].startswith("database is up to date (revision ")
    import sqlite3

    with sqlite3.connect(tmp_path / "fresh.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"operations", "operation_labels", "attempts", "expired_operations"} <= tables


async def test_python_dash_m_and_console_script_agree() -> None:
    code, out, _ = await _run(*LROD, "--help", env=dict(os.environ))
    assert code == 0
    assert "serve" in out
    script = Path(sys.executable).with_name("lrod")
    code2, out2, _ = await _run(str(script), "--help", env=dict(os.environ))
    assert code2 == 0
    assert out2 == out


async def test_unknown_registry_fails_clearly(tmp_path) -> None:
    env = os.environ | {"LROD_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    code, _, err = await _run(*LROD, "serve", "--jobs", "no_such_module:registry", env=env)
    assert code != 0
    assert "cannot load 'no_such_module:registry'" in err
    assert "Traceback" not in err


async def test_serve_with_the_http_front_door(database_url, tmp_path) -> None:
    import aiohttp

    env = _env(database_url, tmp_path) | {"LROD_HTTP_ADDRESS": "127.0.0.1:0"}
    process = await asyncio.create_subprocess_exec(
        *LROD, "serve", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            while not (
                found := re.search(rb"serving HTTP on port (\d+)", await process.stderr.readline())
            ):
                pass
        base = f"http://127.0.0.1:{int(found.group(1))}"
        async with aiohttp.ClientSession(base) as http:
            accepted = await http.post(
                "/v1/operations:submit",
                json={
                    "jobType": "examples.flaky",
                    "input": {"@type": "type.googleapis.com/lrod.examples.v1.FlakyJob"},
                },
            )
            assert accepted.status == 202
            location = accepted.headers["Location"]
            async with asyncio.timeout(20):
                while (status := await http.get(location, allow_redirects=False)).status == 200:
                    await asyncio.sleep(0.1)
            assert status.status == 303
            result = await (await http.get(status.headers["Location"])).json()
            assert result == {
                "@type": "type.googleapis.com/lrod.examples.v1.FlakyResult",
                "attempts": 1,
            }
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            await process.wait()
        assert process.returncode == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
