"""Figure 7: reads under load. GetOperation at a fixed 200 calls/s on one
server process (SQLite, embedded workers) while thousands of WaitOperation
calls are held on running jobs that report progress: every progress write
wakes that job's waiters, which read it and wait again. Measured: the Get
p99 with the waiters and their running jobs, and the same server's Get p99
idle (before the jobs start), as the baseline in the same run.

The Gets read finished operations (a pool of no-op jobs run first), one
every 5 ms whether or not the last one returned (open loop), so a stall of
the server's event loop shows in the p99 instead of slowing the load down."""

from __future__ import annotations

import asyncio
import contextlib
import time

import grpc
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from bench.client import Lrod, submit_request
from bench.context import SQLITE, Context
from bench.jobs import PROGRESS
from bench.load import channel
from bench.procs import CpuMeter
from bench.results import Figure
from bench.stats import percentile
from lrod.v1 import operation_metadata_pb2

PART = "busy"
GROUP = "7. Reads under load: GetOperation beside many WaitOperation calls"
RATE = 200.0
JOBS = 50
CHANNELS = 8
BURST = 500
SETTLE = 2.0
READ_POOL = 200
RUNNING = operation_metadata_pb2.OperationMetadata.State.RUNNING


def _state(op: operations_pb2.Operation) -> int:
    meta = operation_metadata_pb2.OperationMetadata()
    op.metadata.Unpack(meta)
    return int(meta.state)


async def _gets(lrod: Lrod, names: list[str], seconds: float) -> tuple[list[float], int]:
    """GetOperation at RATE per second for `seconds`, open loop: latencies, errors."""
    latencies: list[float] = []
    errors = 0

    async def one(name: str) -> None:
        nonlocal errors
        began = time.monotonic()
        try:
            await lrod.get(name)
        except grpc.aio.AioRpcError:
            errors += 1
            return
        latencies.append(time.monotonic() - began)

    loop = asyncio.get_running_loop()
    start = loop.time()
    calls: list[asyncio.Task[None]] = []
    for i in range(int(seconds * RATE)):
        delay = start + i / RATE - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        calls.append(asyncio.create_task(one(names[i % len(names)])))
    await asyncio.gather(*calls)
    return latencies, errors


async def _hold(lrod: Lrod, name: str, stop: asyncio.Event) -> None:
    """One waiter: WaitOperation again each time the server's cap ends it."""
    request = operations_pb2.WaitOperationRequest(
        name=name, timeout=duration_pb2.Duration(seconds=600)
    )
    while not stop.is_set():
        with contextlib.suppress(grpc.aio.AioRpcError):
            await lrod.operations.WaitOperation(request)


async def _round(ctx: Context, waiters: int, window: float) -> dict[str, float]:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(ctx.database(SQLITE, "busy"))
        server = await stack.enter_async_context(
            ctx.lrod_server(url, workers=JOBS, name="busy-server")
        )
        clients = [
            Lrod(await stack.enter_async_context(channel(server.port))) for _ in range(CHANNELS)
        ]
        lrod = clients[0]
        pool = [(await lrod.submit(submit_request())).name for _ in range(READ_POOL)]
        for name in pool:
            await lrod.wait_done(name)
        await _gets(lrod, pool, 1.0)  # warm
        meter = CpuMeter(server.pid)
        meter.start()
        idle, idle_errors = await _gets(lrod, pool, window)
        idle_cpu = meter.stop()

        jobs = [
            await lrod.submit(
                submit_request(PROGRESS, wrappers_pb2.DoubleValue(value=window + 60)),
            )
            for _ in range(JOBS)
        ]
        names = [op.name for op in jobs]
        for _ in range(200):
            states = [_state(await lrod.get(name)) for name in names]
            if all(state == RUNNING for state in states):
                break
            await asyncio.sleep(0.1)
        else:
            raise TimeoutError("the progress jobs did not all start")
        stop = asyncio.Event()
        held: list[asyncio.Task[None]] = []
        for first in range(0, waiters, BURST):
            for i in range(first, min(waiters, first + BURST)):
                client = clients[i % CHANNELS]
                held.append(asyncio.create_task(_hold(client, names[i % JOBS], stop)))
            await asyncio.sleep(0.2)
        await asyncio.sleep(SETTLE)
        try:
            async with ctx.profiler.record("busy.server", server.pid, ctx.plan.profile_seconds):
                meter.start()
                busy, busy_errors = await _gets(lrod, pool, window)
                busy_cpu = meter.stop()
        finally:
            stop.set()
            for name in names:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await lrod.operations.CancelOperation(
                        operations_pb2.CancelOperationRequest(name=name)
                    )
            for task in held:
                task.cancel()
            await asyncio.gather(*held, return_exceptions=True)
    return {
        "idle_p50_ms": percentile(idle, 50) * 1000,
        "idle_p99_ms": percentile(idle, 99) * 1000,
        "busy_p50_ms": percentile(busy, 50) * 1000,
        "busy_p99_ms": percentile(busy, 99) * 1000,
        "busy_max_ms": max(busy) * 1000,
        "errors": float(idle_errors + busy_errors),
        "idle_cpu": idle_cpu,
        "busy_cpu": busy_cpu,
        "samples": float(len(busy)),
    }


async def measure(ctx: Context) -> list[Figure]:
    waiters, window = ctx.plan.busy_waiters, ctx.plan.busy_window
    found = [await _round(ctx, waiters, window) for _ in range(ctx.plan.busy_rounds)]

    def series(key: str) -> list[float]:
        return [r[key] for r in found]

    detail = {key: series(key) for key in found[0]}
    idle, busy = series("idle_p99_ms"), series("busy_p99_ms")
    return [
        Figure(
            "busy.idle", GROUP, f"SQLite, GetOperation p99 at {RATE:.0f}/s, idle", "ms", idle,
            part=PART, detail=detail,
            note=f"p50 {found[0]['idle_p50_ms']:.1f} ms; server CPU {found[0]['idle_cpu']:.0%}"
            " of a core",
        ),
        Figure(
            "busy.get_p99", GROUP,
            f"SQLite, GetOperation p99 at {RATE:.0f}/s with {waiters:,} WaitOperation calls "
            f"on {JOBS} running jobs reporting progress", "ms", busy,
            "busy.idle", [b / i for b, i in zip(busy, idle, strict=True)], PART,
            note=f"p50 {found[0]['busy_p50_ms']:.1f} ms, slowest {found[0]['busy_max_ms']:.0f} ms;"
            f" server CPU {found[0]['busy_cpu']:.0%} of a core; {int(found[0]['errors'])} errors",
            detail=detail,
        ),
    ]  # fmt: skip
