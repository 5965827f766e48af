"""Figure 5: many waiters. N WatchOperation streams held by one server
process (API only, PostgreSQL), over N/10 queued operations (bulk-loaded;
ten streams follow each); then a `lrod worker` process runs them all.
Measured: the server's resident memory added by the open streams, how long
after its operation finished each stream learned it (from the operation's
end_time), and the time until every stream had seen its operation finish.
Baseline: the echo server holding as many bare server streams (each sends an
Operation, waits, and sends it done once one call releases them all).

Ten streams per operation keep the worker's share of the run short; every
stream still holds its own call and subscription and is woken and sent its
messages on its own. Since lrod's waiters of one operation share one read per
change, the store does a tenth of the reads it would with one operation per
stream: on reads, this figure flatters lrod.
Streams are opened 500 at a time: a larger burst of new calls is cancelled
by grpc-core's limit on calls the application has not yet taken up
(grpc.server.max_pending_requests, 1,000 by default)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc
import psutil
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, timestamp_pb2

from bench import bulk
from bench.client import Lrod
from bench.context import POSTGRESQL, Context
from bench.jobs import NOOP
from bench.load import channel
from bench.procs import child
from bench.results import Figure, not_measured
from bench.servers import ECHO_HOLD, ECHO_RELEASE
from bench.stats import median, percentile, ratios
from lrod.v1 import job_service_pb2, operation_metadata_pb2

PART = "watchers"
GROUP = "5. Many waiters: WatchOperation streams on one server process"
CHANNELS = 8
STREAMS_PER_OPERATION = 10
BURST = 500
WORKER_CONCURRENCY = 32
SETTLE = 1.0
OPEN_TIMEOUT = 120.0
FINISH_TIMEOUT = 600.0
MB = 1024 * 1024

Open = Callable[[int], AsyncIterator[job_service_pb2.WatchOperationResponse]]


@dataclass
class Streams:
    opened: int = 0
    failed: int = 0
    first_error: str = ""
    seen_at: list[float] = field(default_factory=list)
    end_times: list[float] = field(default_factory=list)


def _end_time(op: operations_pb2.Operation) -> float:
    meta = operation_metadata_pb2.OperationMetadata()
    op.metadata.Unpack(meta)
    return float(meta.end_time.ToNanoseconds()) / 1e9


async def _follow(call: AsyncIterator[job_service_pb2.WatchOperationResponse], s: Streams) -> None:
    first = True
    try:
        async for message in call:
            if first:
                s.opened += 1
                first = False
            if message.operation.done:
                s.seen_at.append(time.time())
                s.end_times.append(_end_time(message.operation))
                return
    except grpc.aio.AioRpcError as error:
        s.failed += 1
        s.first_error = s.first_error or f"{error.code().name}: {error.details()}"


async def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    for _ in range(int(timeout / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{what} after {timeout:.0f} s")


async def _open(open_call: Open, count: int, streams: Streams) -> list[asyncio.Task[None]]:
    """Open `count` streams, BURST at a time, each once the last burst is up."""
    tasks: list[asyncio.Task[None]] = []
    for first in range(0, count, BURST):
        for i in range(first, min(count, first + BURST)):
            tasks.append(asyncio.create_task(_follow(open_call(i), streams)))
        await _until(
            lambda: streams.opened + streams.failed >= len(tasks), OPEN_TIMEOUT, "streams stalled"
        )
    return tasks


async def _finish(
    tasks: list[asyncio.Task[None]], streams: Streams, process: psutil.Process
) -> int:
    """Wait until every stream saw done; the peak RSS meanwhile."""
    peak = process.memory_info().rss
    for _ in range(int(FINISH_TIMEOUT / 0.1)):
        if len(streams.seen_at) + streams.failed >= len(tasks):
            break
        peak = max(peak, process.memory_info().rss)
        await asyncio.sleep(0.1)
    else:
        raise TimeoutError(f"{len(streams.seen_at)} of {len(tasks)} streams saw done")
    if streams.failed:
        raise RuntimeError(f"{streams.failed} streams failed: {streams.first_error}")
    return peak


async def _stop(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _sample_operation() -> operations_pb2.Operation:
    """An Operation shaped like lrod's for a queued no-op."""
    now = timestamp_pb2.Timestamp()
    now.GetCurrentTime()
    meta = operation_metadata_pb2.OperationMetadata(
        state=operation_metadata_pb2.OperationMetadata.State.QUEUED,
        job_type=NOOP, max_attempts=1, create_time=now, update_time=now,
    )  # fmt: skip
    packed = any_pb2.Any()
    packed.Pack(meta)
    return operations_pb2.Operation(name="operations/" + "A" * 22, metadata=packed)


async def _bare_round(ctx: Context, count: int) -> dict[str, float]:
    response_file = ctx.work / "watch-operation.bin"
    response_file.write_bytes(_sample_operation().SerializeToString())
    args = ["-m", "bench.servers", "echo", "--response-file", str(response_file)]
    async with contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(child(args, ctx.log("watchers-echo")))
        process = psutil.Process(server.pid)
        channels = [await stack.enter_async_context(channel(server.port)) for _ in range(CHANNELS)]
        holds = [
            c.unary_stream(
                ECHO_HOLD,
                request_serializer=job_service_pb2.WatchOperationRequest.SerializeToString,
                response_deserializer=job_service_pb2.WatchOperationResponse.FromString,
            )
            for c in channels
        ]
        release = channels[0].unary_unary(
            ECHO_RELEASE,
            request_serializer=operations_pb2.GetOperationRequest.SerializeToString,
            response_deserializer=operations_pb2.Operation.FromString,
        )
        await asyncio.sleep(SETTLE)
        rss_before = process.memory_info().rss
        streams = Streams()
        request = job_service_pb2.WatchOperationRequest(name="operations/" + "A" * 22)
        tasks = await _open(lambda i: holds[i % CHANNELS](request), count, streams)
        try:
            await asyncio.sleep(SETTLE)
            rss_open = process.memory_info().rss
            released = time.time()
            await release(operations_pb2.GetOperationRequest(name=request.name))
            await _finish(tasks, streams, process)
        finally:
            await _stop(tasks)
    return {
        "added_mb": (rss_open - rss_before) / MB,
        "all_seen_ms": (max(streams.seen_at) - released) * 1000,
    }


async def _lrod_round(ctx: Context, count: int) -> dict[str, float]:
    async with contextlib.AsyncExitStack() as stack:
        url = await stack.enter_async_context(ctx.database(POSTGRESQL, "watchers"))
        operations = max(1, count // STREAMS_PER_OPERATION)
        await asyncio.to_thread(bulk.load, url, operations, bulk.QUEUED, NOOP)
        names = await asyncio.to_thread(bulk.sample_names, url, operations)
        server = await stack.enter_async_context(
            ctx.lrod_server(url, workers=0, name="watchers-server")
        )
        process = psutil.Process(server.pid)
        clients = [
            Lrod(await stack.enter_async_context(channel(server.port))) for _ in range(CHANNELS)
        ]
        for lrod in clients:  # every channel connected, the server warm
            await lrod.get(names[0])
        await asyncio.sleep(SETTLE)
        rss_before = process.memory_info().rss
        streams = Streams()
        opening = time.monotonic()

        def open_call(i: int) -> AsyncIterator[job_service_pb2.WatchOperationResponse]:
            request = job_service_pb2.WatchOperationRequest(name=names[i % operations])
            return clients[i % CHANNELS].jobs.WatchOperation(request)  # type: ignore[no-any-return]

        tasks = await _open(open_call, count, streams)
        try:
            opened_in = time.monotonic() - opening
            await asyncio.sleep(SETTLE)
            rss_open = process.memory_info().rss
            started = time.time()
            cpu_before = process.cpu_times()
            async with (
                ctx.lrod_worker(url, concurrency=WORKER_CONCURRENCY, name="watchers-worker"),
                ctx.profiler.record("watchers.server", server.pid, ctx.plan.profile_seconds * 2),
            ):
                peak = await _finish(tasks, streams, process)
                cpu_after = process.cpu_times()
        finally:
            await _stop(tasks)
    wake = [seen - end for seen, end in zip(streams.seen_at, streams.end_times, strict=True)]
    return {
        "added_mb": (rss_open - rss_before) / MB,
        "peak_added_mb": (peak - rss_before) / MB,
        "wake_p50_ms": percentile(wake, 50) * 1000,
        "wake_p99_ms": percentile(wake, 99) * 1000,
        "wake_max_ms": max(wake) * 1000,
        "all_seen_s": max(streams.seen_at) - started,
        "opened_s": opened_in,
        # The server's CPU from the worker's start until every stream saw its
        # operation finish: what waking them cost, whatever else ran here.
        "server_cpu_s": (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
    }


async def measure(ctx: Context) -> list[Figure]:
    count = ctx.plan.watchers
    bare = [await _bare_round(ctx, count) for _ in range(ctx.plan.watcher_rounds)]
    bare_memory = [r["added_mb"] for r in bare]
    figures = [
        Figure(
            "watchers.bare.memory", GROUP,
            f"bare grpc.aio server, {count:,} streams open: RSS added", "MB", bare_memory,
            part=PART, note="the echo server's Hold streams",
        ),
        Figure(
            "watchers.bare.release", GROUP,
            f"bare grpc.aio server, {count:,} streams: one release -> every stream saw it", "ms",
            [r["all_seen_ms"] for r in bare], part=PART,
        ),
    ]  # fmt: skip
    if ctx.cluster is None:
        why = ctx.no_postgres or "PostgreSQL is not available"
        return [
            *figures,
            *(
                not_measured(f"watchers.{key}", GROUP, label, unit, PART, why)
                for key, label, unit in (
                    ("memory", "server memory added", "MB"),
                    ("wake", "finish -> stream", "ms"),
                )
            ),
        ]
    found = [await _lrod_round(ctx, count) for _ in range(ctx.plan.watcher_rounds)]

    def series(key: str) -> list[float]:
        return [r[key] for r in found]

    detail = {key: series(key) for key in found[0]}
    return [
        *figures,
        Figure(
            "watchers.memory", GROUP, f"lrod, {count:,} streams open: server RSS added", "MB",
            series("added_mb"), "watchers.bare.memory", ratios(series("added_mb"), bare_memory),
            PART,
            note=f"peak while they finish: +{median(series('peak_added_mb')):.0f} MB; "
            f"all open in {median(series('opened_s')):.1f} s",
            detail=detail,
        ),
        Figure(
            "watchers.wake", GROUP,
            f"lrod, {count:,} streams: operation finished -> stream saw it, slowest", "ms",
            series("wake_max_ms"), "watchers.bare.release",
            ratios(series("wake_max_ms"), [r["all_seen_ms"] for r in bare]), PART,
            note=f"p50 {median(series('wake_p50_ms')):.0f} ms, p99 "
            f"{median(series('wake_p99_ms')):.0f} ms",
            detail=detail,
        ),
        Figure(
            "watchers.all_seen", GROUP,
            f"lrod, {count:,} streams: worker start -> every stream saw its operation finish", "s",
            series("all_seen_s"), part=PART,
            note=f"{count // STREAMS_PER_OPERATION:,} operations, {STREAMS_PER_OPERATION} streams "
            f"each; one `lrod worker` process, concurrency {WORKER_CONCURRENCY}; server CPU "
            f"meanwhile {median(series('server_cpu_s')):.2f} s",
            detail=detail,
        ),
    ]  # fmt: skip
