"""`lrod serve --processes N`: N processes serving one port (SO_REUSEPORT),
on SQLite and PostgreSQL; a job submitted through one process and watched
through another; SIGTERM stops them all; a port in use is one line.

Which process holds a connection is read from /proc (the server side of each
established TCP connection to the port, by socket inode)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import grpc
import pytest

from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2, job_service_pb2_grpc
from tests.helpers import state_name, submit

pytestmark = pytest.mark.slow

LROD = [sys.executable, "-m", "lrod"]
# A channel of its own TCP connection (grpc shares them between channels).
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def _env(database_url: str, tmp_path: Path) -> dict[str, str]:
    return os.environ | {
        "LROD_DATABASE_URL": database_url,
        "LROD_EXPORT_DIR": str(tmp_path / "exports"),
    }


async def _start(
    database_url: str, tmp_path: Path, count: int
) -> tuple[asyncio.subprocess.Process, int]:
    # The children's logs go to a file: a pipe nobody reads would fill up.
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *LROD, "serve", "--processes", str(count), "--address", "127.0.0.1:0",
            "--poll-seconds", "0.2",
            env=_env(database_url, tmp_path),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=sink,
        )  # fmt: skip
    pattern = re.compile(rf"serving on 127\.0\.0\.1:(\d+) with {count} processes")
    async with asyncio.timeout(60):
        while True:
            found = pattern.search(await asyncio.to_thread(log.read_text))
            if found:
                return process, int(found.group(1))
            assert process.returncode is None, "lrod serve exited before serving"
            await asyncio.sleep(0.1)


def _children(pid: int) -> list[int]:
    """The serving children (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in found if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _established(port: int) -> set[int]:
    """Socket inodes of established connections whose local port is `port`."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], int(fields[9])
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _connections_by_process(children: list[int], port: int) -> dict[int, set[int]]:
    serving = _established(port)
    result: dict[int, set[int]] = {}
    for child in children:
        owned: set[int] = set()
        for fd in Path(f"/proc/{child}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in serving:
                    owned.add(inode)
        result[child] = owned
    return result


async def _channel_to_each(
    children: list[int], port: int, want: int
) -> tuple[list[grpc.aio.Channel], list[grpc.aio.Channel]]:
    """Open channels until `want` different processes hold one each: those
    channels (one per process), and every channel opened."""
    opened: list[grpc.aio.Channel] = []
    per_process: dict[int, grpc.aio.Channel] = {}
    for _ in range(64):
        before = _connections_by_process(children, port)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OWN_CONNECTION)
        opened.append(channel)
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        await stub.ListJobTypes(job_service_pb2.ListJobTypesRequest())
        after = _connections_by_process(children, port)
        gained = [pid for pid in children if after[pid] - before[pid]]
        if len(gained) == 1 and gained[0] not in per_process:
            per_process[gained[0]] = channel
        if len(per_process) == want:
            break
    return list(per_process.values()), opened


async def _stop(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        return await process.wait()


async def test_two_processes_serve_one_port(database_url, tmp_path) -> None:
    process, port = await _start(database_url, tmp_path, 2)
    children = _children(process.pid)
    opened: list[grpc.aio.Channel] = []
    try:
        assert len(children) == 2
        (first, second), opened = await _channel_to_each(children, port, 2)
        # Submitted through one process, watched through the other.
        op = await submit(
            job_service_pb2_grpc.JobServiceStub(first), "examples.sleep", ex.SleepJob(steps=2)
        )
        watcher = job_service_pb2_grpc.JobServiceStub(second)
        seen = [
            update.operation
            async for update in watcher.WatchOperation(
                job_service_pb2.WatchOperationRequest(name=op.name), timeout=30
            )
        ]
        assert seen[-1].done
        assert state_name(seen[-1]) == "SUCCEEDED"
        assert all(update.name == op.name for update in seen)
    finally:
        for channel in opened:
            await channel.close()
        code = await _stop(process)
    assert code == 0
    # The parent reaped every child before it exited.
    assert not [child for child in children if _alive(child)]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lrod.db'}"


async def test_a_port_in_use_is_one_line(sqlite_url, tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for count in ("1", "3"):
            process = await asyncio.create_subprocess_exec(
                *LROD, "serve", "--processes", count, "--address", f"127.0.0.1:{port}",
                env=_env(sqlite_url, tmp_path),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(60):
                _, err = await process.communicate()
            assert process.returncode == 2  # a configuration error
            lines = err.decode().strip().splitlines()
            # The problem, then the fix.
            assert len(lines) == 2, lines
            assert lines[0].startswith(
                f"Error: cannot listen on 127.0.0.1:{port}: Address already in use"
            )
            assert "choose another" in lines[1]
