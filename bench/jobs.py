"""The job types the benchmark runs, loadable by `lrod worker --jobs bench.jobs:registry`."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

from google.protobuf import empty_pb2, wrappers_pb2

from lrod import JobContext, Registry

NOOP = "bench.noop"
STAMP = "bench.stamp"

registry = Registry()


@registry.job(NOOP, input=empty_pb2.Empty, output=empty_pb2.Empty, max_attempts=1)
async def noop(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
    """Does nothing."""
    return empty_pb2.Empty()


@registry.job(
    STAMP,
    input=wrappers_pb2.DoubleValue,
    output=wrappers_pb2.DoubleValue,
    max_attempts=1,
    default_timeout=timedelta(seconds=30),
)
async def stamp(ctx: JobContext, delay: wrappers_pb2.DoubleValue) -> wrappers_pb2.DoubleValue:
    """Sleeps `delay` seconds, then returns the moment it returns (CLOCK_MONOTONIC,
    which every process on this machine shares)."""
    await asyncio.sleep(delay.value)
    return wrappers_pb2.DoubleValue(value=time.monotonic())


PROGRESS = "bench.progress"


@registry.job(
    PROGRESS,
    input=wrappers_pb2.DoubleValue,
    output=empty_pb2.Empty,
    max_attempts=1,
    default_timeout=timedelta(seconds=600),
)
async def progress(ctx: JobContext, seconds: wrappers_pb2.DoubleValue) -> empty_pb2.Empty:
    """Runs `seconds`, reporting progress every 50 ms (the worker writes it at
    most every progress interval, 0.2 s by default)."""
    steps = max(1, int(seconds.value / 0.05))
    for step in range(steps):
        ctx.raise_if_cancelled()
        ctx.report_progress(step, steps)
        await asyncio.sleep(0.05)
    return empty_pb2.Empty()
