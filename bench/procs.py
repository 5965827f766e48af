"""Child processes the benchmark starts and stops itself, by pid: servers that
announce `PORT <n>` (or `READY`) on stdout once they serve."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0
STOP_GRACE = 20.0


class ChildFailed(RuntimeError):
    pass


@dataclass
class Child:
    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid


def python_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@contextlib.asynccontextmanager
async def child(
    args: Sequence[str],
    log: Path,
    *,
    env: Mapping[str, str] | None = None,
    announces: bool = True,
    cwd: Path = ROOT,
) -> AsyncIterator[Child]:
    """Run `python args...`; with `announces`, wait for its `PORT n` or `READY`
    line. Stopped with SIGTERM (SIGKILL after a grace period) on exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            cwd=cwd,
            env=python_env(env),
            stdout=asyncio.subprocess.PIPE if announces else sink,
            stderr=sink,
        )
    try:
        port = await _announced(process, log) if announces else 0
        yield Child(process, port, log)
    finally:
        await stop(process)


async def _announced(process: asyncio.subprocess.Process, log: Path) -> int:
    assert process.stdout is not None
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                line = (await process.stdout.readline()).decode().strip()
                if not line and process.stdout.at_eof():
                    break
                if line.startswith("PORT "):
                    return int(line.split()[1])
                if line == "READY":
                    return 0
    except TimeoutError:
        pass
    tail = await asyncio.to_thread(_tail, log)
    raise ChildFailed(f"child {process.pid} did not start:\n{tail}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


async def stop(process: asyncio.subprocess.Process, grace: float = STOP_GRACE) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def until_terminated() -> None:
    """In a child: return on SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()


def announce(port: int | None = None) -> None:
    print("READY" if port is None else f"PORT {port}", flush=True)


class CpuMeter:
    """The share of one core a process used between `start` and `stop`."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._began = (0.0, 0.0)

    def _now(self) -> tuple[float, float]:
        times = self._process.cpu_times()
        return time.monotonic(), times.user + times.system

    def start(self) -> None:
        self._began = self._now()

    def stop(self) -> float:
        (t0, c0), (t1, c1) = self._began, self._now()
        return (c1 - c0) / (t1 - t0) if t1 > t0 else 0.0
