"""Figure 3: completion to client. A `bench.stamp` job sleeps a little and
returns the moment its handler returns (CLOCK_MONOTONIC, shared by every
process here); the client notes the moment it learns the operation is done.
Through WaitOperation, WatchOperation, and google-api-core's polling future
with its default policy; SQLite with API and worker in one process, and
PostgreSQL with the worker in a process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import grpc
from google.api_core import operation, operations_v1
from google.protobuf import wrappers_pb2

from bench.client import Lrod, submit_request
from bench.context import DATABASE_NAMES, POSTGRESQL, SQLITE, Context
from bench.jobs import STAMP
from bench.load import channel
from bench.results import Figure
from bench.stats import median, percentile
from lrod.v1 import job_service_pb2_grpc

PART = "latency"
GROUP = "3. Completion to client (handler returns -> client knows)"
# The handler sleeps this long (uniformly drawn), so that the client is
# already waiting when it returns.
DELAY = (0.02, 0.05)
IN_FLIGHT = 4
WORKER_CONCURRENCY = 8
POLL_TIMEOUT = 60.0
METHODS = {
    "wait": "WaitOperation",
    "watch": "WatchOperation",
    "poll": "GetOperation polling (api-core default)",
}

Sample = Callable[[], Awaitable[float]]


def _request() -> object:
    delay = random.uniform(*DELAY)
    return submit_request(STAMP, wrappers_pb2.DoubleValue(value=delay))


def _stamp(op: object) -> float:
    value = wrappers_pb2.DoubleValue()
    op.response.Unpack(value)  # type: ignore[attr-defined]
    return value.value


async def _via_wait(lrod: Lrod) -> float:
    op = await lrod.jobs.Submit(_request())
    done = await lrod.wait_done(op.name)
    return time.monotonic() - _stamp(done)


async def _via_watch(lrod: Lrod) -> float:
    op = await lrod.jobs.Submit(_request())
    done = await lrod.watch_done(op.name)
    return time.monotonic() - _stamp(done)


def _via_polling(port: int) -> float:
    """A stock google-api-core client: from_gapic + result(), default polling."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as sync_channel:
        jobs = job_service_pb2_grpc.JobServiceStub(sync_channel)  # type: ignore[no-untyped-call]
        client = operations_v1.OperationsClient(sync_channel)  # type: ignore[no-untyped-call]
        raw = jobs.Submit(_request())
        future = operation.from_gapic(raw, client, wrappers_pb2.DoubleValue)  # type: ignore[no-untyped-call]
        result: wrappers_pb2.DoubleValue = future.result(timeout=POLL_TIMEOUT)
        return time.monotonic() - result.value


def _samplers(lrod: Lrod, port: int) -> dict[str, Sample]:
    return {
        "wait": lambda: _via_wait(lrod),
        "watch": lambda: _via_watch(lrod),
        "poll": lambda: asyncio.to_thread(_via_polling, port),
    }


async def _samples(sample: Sample, count: int, in_flight: int) -> list[float]:
    gate = asyncio.Semaphore(in_flight)

    async def one() -> float:
        async with gate:
            return await sample()

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def measure(ctx: Context) -> list[Figure]:
    plan = ctx.plan
    found: dict[str, list[list[float]]] = {}
    for db in ctx.databases:
        async with contextlib.AsyncExitStack() as stack:
            url = await stack.enter_async_context(ctx.database(db, "latency"))
            # SQLite: API and workers in one process. PostgreSQL: API in one,
            # the worker in another, woken through LISTEN/NOTIFY.
            embedded = WORKER_CONCURRENCY if db == SQLITE else 0
            server = await stack.enter_async_context(
                ctx.lrod_server(url, workers=embedded, name=f"latency-{db}")
            )
            pids = {"server": server.pid}
            if db == POSTGRESQL:
                worker = await stack.enter_async_context(
                    ctx.lrod_worker(url, concurrency=WORKER_CONCURRENCY, name="latency-worker")
                )
                pids["worker"] = worker.pid
            lrod = Lrod(await stack.enter_async_context(channel(server.port)))
            samplers = _samplers(lrod, server.port)
            await _via_wait(lrod)  # the worker is up and warm
            for round_n in range(plan.rounds):
                for method, sample in samplers.items():
                    polling = method == "poll"
                    count = plan.polling_samples if polling else plan.latency_samples
                    in_flight = count if polling else IN_FLIGHT
                    key = f"latency.{db}.{method}"
                    async with contextlib.AsyncExitStack() as profiling:
                        if round_n == plan.rounds - 1 and method == "wait":
                            for role, pid in pids.items():
                                await profiling.enter_async_context(
                                    ctx.profiler.record(f"{key}.{role}", pid, plan.profile_seconds)
                                )
                        values = await _samples(sample, count, in_flight)
                    found.setdefault(key, []).append(values)
    return [_figure(ctx, key, rounds) for key, rounds in found.items()]


def _figure(ctx: Context, key: str, rounds: list[list[float]]) -> Figure:
    _, db, method = key.split(".")
    where = "one process" if db == SQLITE else "worker in another process"
    p99 = [percentile(r, 99) * 1000 for r in rounds]
    p50 = [percentile(r, 50) * 1000 for r in rounds]
    pooled = [v for r in rounds for v in r]
    return Figure(
        key,
        GROUP,
        f"{DATABASE_NAMES[db]} ({where}), {METHODS[method]}",
        "ms p99",
        p99,
        part=PART,
        note=f"p50 {median(p50):.1f} ms; {len(pooled)} samples",
        detail={
            "p50_ms_rounds": p50,
            "p99_ms_rounds": p99,
            "pooled_p50_ms": percentile(pooled, 50) * 1000,
            "pooled_p99_ms": percentile(pooled, 99) * 1000,
            "max_ms": max(pooled) * 1000,
            "samples": len(pooled),
            "handler_delay_s": list(DELAY),
        },
    )
