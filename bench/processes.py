"""Figure 10: every core. Submit throughput (durable, workers off) of
`lrod serve --processes N --concurrency 0` on PostgreSQL, 64 clients spread
over 8 channels (8 TCP connections, which the kernel spreads over the
processes), beside the same with one process, interleaved round by round.
On a machine whose cores are all in use (this one is shared, and the client
runs on it too) the second process has little to take; where cores are free,
N processes should give up to N times the rate, until the database's commit
rate is the limit."""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc

from bench.client import Lrod, submit_request
from bench.context import POSTGRESQL, Context
from bench.load import closed_loop
from bench.procs import ROOT, python_env, stop
from bench.results import Figure, not_measured
from bench.stats import ratios

PART = "processes"
GROUP = "10. Every core: lrod serve --processes N"
CLIENTS = 64
CHANNELS = 8
COUNTS = (1, 2)
START_TIMEOUT = 90.0


@contextlib.asynccontextmanager
async def _serve(url: str, count: int, log: Path) -> AsyncIterator[int]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lrod", "--log-level", "INFO", "serve",
            "--processes", str(count), "--concurrency", "0", "--address", "127.0.0.1:0",
            "--jobs", "bench.jobs:registry", "--database-url", url,
            cwd=ROOT, env=python_env(), stdout=asyncio.subprocess.DEVNULL, stderr=sink,
        )  # fmt: skip
    # The log is JSON lines: the message is followed by its fields.
    pattern = re.compile(r"serving on (?:127\.0\.0\.1:|port )(\d+)(?: with \d+ processes)?\b")
    try:
        async with asyncio.timeout(START_TIMEOUT):
            while True:
                text = await asyncio.to_thread(log.read_text, errors="replace")
                found = [m for m in pattern.finditer(text) if count == 1 or "with" in m.group(0)]
                if found:
                    break
                if process.returncode is not None:
                    raise RuntimeError(f"lrod serve --processes {count} exited: {text[-500:]}")
                await asyncio.sleep(0.1)
        yield int(found[0].group(1))
    finally:
        await stop(process)


async def _rate(ctx: Context, port: int) -> float:
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        for _ in range(CHANNELS)
    ]
    try:
        clients = [Lrod(c) for c in channels]
        request = submit_request()
        for client in clients:  # connect every channel before the clock starts
            await client.submit(request)

        async def call(index: int) -> object:
            return await clients[index % CHANNELS].submit(request)

        plan = ctx.plan
        result = await closed_loop(call, clients=CLIENTS, warmup=plan.warmup, window=plan.window)
        return result.rate
    finally:
        await asyncio.gather(*(c.close() for c in channels))


async def measure(ctx: Context) -> list[Figure]:
    if ctx.cluster is None:
        why = ctx.no_postgres or "PostgreSQL is not available"
        return [
            not_measured(f"processes.{n}", GROUP, f"{n} processes", "ops/s", PART, why)
            for n in COUNTS
        ]
    rates: dict[int, list[float]] = {n: [] for n in COUNTS}
    async with ctx.database(POSTGRESQL, "processes") as url:
        for _ in range(ctx.plan.rounds):
            for count in COUNTS:
                async with _serve(url, count, ctx.log(f"processes-{count}")) as port:
                    rates[count].append(await _rate(ctx, port))
    one = f"processes.{COUNTS[0]}"
    figures = [
        Figure(
            one, GROUP, f"Submit, PostgreSQL, 1 process, {CLIENTS} clients on {CHANNELS} channels",
            "ops/s", rates[COUNTS[0]], part=PART,
        )
    ]  # fmt: skip
    for count in COUNTS[1:]:
        figures.append(
            Figure(
                f"processes.{count}", GROUP,
                f"Submit, PostgreSQL, --processes {count}, "
                f"{CLIENTS} clients on {CHANNELS} channels",
                "ops/s", rates[count], one, ratios(rates[count], rates[COUNTS[0]]), PART,
                note="ratio: over one process, same rounds; the client shares the machine",
            )
        )  # fmt: skip
    return figures
