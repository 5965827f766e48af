"""Helpers for execution tests: worker subprocesses and waiting for done."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from google.longrunning import operations_pb2
from google.protobuf import duration_pb2

from lrod.domain.names import parse_operation_name
from lrod.store.engine import open_database
from lrod.store.protocol import AttemptRecord
from lrod.store.sql_store import SqlStore

ROOT = Path(__file__).resolve().parents[2]


async def start_worker(
    database_url: str, log: Path, *args: str, lease: float = 1.5
) -> asyncio.subprocess.Process:
    """A real `lrod worker` process on the same database."""
    env = os.environ | {"LROD_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
    handle = log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lrod",
            "worker",
            "--jobs",
            "tests.jobs:subprocess_registry",
            "--lease-seconds",
            str(lease),
            "--poll-seconds",
            "0.2",
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=handle,
        )
    finally:
        handle.close()


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
        await process.wait()


async def wait_until(operations, name: str, predicate, seconds: float = 20):
    """Poll GetOperation until `predicate(op)`; for conditions that are not
    'done' (which WaitOperation covers)."""
    async with asyncio.timeout(seconds):
        while True:
            op = await operations.GetOperation(operations_pb2.GetOperationRequest(name=name))
            if predicate(op):
                return op
            await asyncio.sleep(0.05)


async def wait_done(operations, name: str, seconds: float = 30) -> operations_pb2.Operation:
    """WaitOperation until done (each call is capped by the server)."""
    async with asyncio.timeout(seconds):
        while True:
            op = await operations.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=name, timeout=duration_pb2.Duration(seconds=5)
                )
            )
            if op.done:
                return op


async def attempts_of(database_url: str, name: str) -> list[AttemptRecord]:
    store = SqlStore(open_database(database_url))
    try:
        return list(await store.attempts(parse_operation_name(name)))
    finally:
        await store.close()


async def start_server(
    database_url: str, log: Path, *args: str
) -> tuple[asyncio.subprocess.Process, int]:
    """A real `lrod serve` process on 127.0.0.1 and a free port; returns it and the port."""
    env = os.environ | {
        "LROD_DATABASE_URL": database_url,
        "LROD_ADDRESS": "127.0.0.1:0",
        "PYTHONUNBUFFERED": "1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lrod",
        "serve",
        "--jobs",
        "tests.jobs:subprocess_registry",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    lines: list[bytes] = []
    async with asyncio.timeout(30):
        while True:
            line = await process.stderr.readline()
            lines.append(line)
            if not line:
                raise AssertionError(b"lrod serve exited:\n" + b"".join(lines))
            found = re.search(rb"serving on port (\d+)", line)
            if found:
                break
    _draining.add(asyncio.ensure_future(_drain(process.stderr, log)))
    return process, int(found.group(1))


_draining: set[asyncio.Future[None]] = set()


async def _drain(stream: asyncio.StreamReader, log: Path) -> None:
    """Keep reading the server's log so its pipe never fills."""
    with log.open("ab") as handle:
        while line := await stream.readline():
            handle.write(line)
            handle.flush()
