"""Job types the tests use besides the built-in examples."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from datetime import timedelta

from google.protobuf import empty_pb2, wrappers_pb2

from lrod import Backoff, JobContext, Registry, RetryableJobError
from lrod.jobs.context import JobCancelled
from lrod.jobs.examples import registry as examples


class Gates:
    """Events the tests open to let a `test.gate` job finish, and what the
    `test.block` handler saw."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.saw_cancel: list[str] = []
        self.started: dict[str, asyncio.Event] = {}
        self.thread_saw_stop = threading.Event()

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def started_event(self, key: str) -> asyncio.Event:
        return self.started.setdefault(key, asyncio.Event())


def build_registry(gates: Gates) -> Registry:
    registry = Registry()
    for job_type in examples:
        registry.register(job_type)

    @registry.job("test.gate", input=wrappers_pb2.StringValue, output=wrappers_pb2.StringValue)
    async def gate(ctx: JobContext, key: wrappers_pb2.StringValue) -> wrappers_pb2.StringValue:
        """Waits until the test opens the gate named by the input."""
        gates.started_event(key.value).set()
        await gates.gate(key.value).wait()
        ctx.report_progress(1, 1, "opened")
        return wrappers_pb2.StringValue(value=f"opened {key.value}")

    @registry.job("test.block", input=wrappers_pb2.StringValue, output=empty_pb2.Empty)
    async def block(ctx: JobContext, key: wrappers_pb2.StringValue) -> empty_pb2.Empty:
        """Runs until cancelled, and notes that it saw the request."""
        gates.started_event(key.value).set()
        await ctx.cancelled()
        gates.saw_cancel.append(key.value)
        raise JobCancelled()

    @registry.job(
        "test.crash", input=wrappers_pb2.StringValue, output=empty_pb2.Empty, max_attempts=1
    )
    async def crash(ctx: JobContext, text: wrappers_pb2.StringValue) -> empty_pb2.Empty:
        """Raises an unexpected exception carrying internal text."""
        raise ValueError(f"internal detail: {text.value}")

    @registry.job(
        "test.noop", input=empty_pb2.Empty, output=empty_pb2.Empty, max_timeout=timedelta(minutes=5)
    )
    async def noop(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
        """Does nothing."""
        return empty_pb2.Empty()

    @registry.job("test.stubborn", input=empty_pb2.Empty, output=empty_pb2.Empty)
    async def stubborn(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
        """Ignores cancellation."""
        await asyncio.sleep(30)
        return empty_pb2.Empty()

    @registry.job(
        "test.obstinate",
        input=empty_pb2.Empty,
        output=empty_pb2.Empty,
        max_attempts=1,
        default_timeout=timedelta(seconds=0.3),
    )
    async def obstinate(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
        """Swallows the stop at its time limit and returns as if done."""
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return empty_pb2.Empty()

    @registry.job("test.halfway", input=wrappers_pb2.StringValue, output=empty_pb2.Empty)
    async def halfway(ctx: JobContext, key: wrappers_pb2.StringValue) -> empty_pb2.Empty:
        """Reports half its progress, then waits for its gate."""
        ctx.report_progress(1, 2, "half")
        await gates.gate(key.value).wait()
        return empty_pb2.Empty()

    @registry.job("test.chatty", input=wrappers_pb2.Int32Value, output=empty_pb2.Empty)
    async def chatty(ctx: JobContext, rows: wrappers_pb2.Int32Value) -> empty_pb2.Empty:
        """Reports progress after every row."""
        for row in range(1, rows.value + 1):
            ctx.report_progress(row, rows.value, "rows")
            if row % 100 == 0:
                await asyncio.sleep(0.01)
        return empty_pb2.Empty()

    @registry.job(
        "test.ephemeral",
        input=empty_pb2.Empty,
        output=empty_pb2.Empty,
        retention=timedelta(seconds=1),
    )
    async def ephemeral(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
        """Finishes at once and is kept for one second."""
        return empty_pb2.Empty()

    @registry.job(
        "test.always_temporary",
        input=empty_pb2.Empty,
        output=empty_pb2.Empty,
        max_attempts=4,
        backoff=Backoff(minimum=timedelta(milliseconds=100), maximum=timedelta(milliseconds=400)),
    )
    async def always_temporary(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
        """Fails with a temporary error every time."""
        raise RetryableJobError(
            f"Still unavailable (attempt {ctx.info.attempt}).", reason="UPSTREAM_DOWN"
        )

    @registry.job(
        "test.connection_flaky",
        input=empty_pb2.Empty,
        output=empty_pb2.Empty,
        max_attempts=3,
        retryable_exceptions=(ConnectionError,),
        backoff=Backoff(minimum=timedelta(milliseconds=50), maximum=timedelta(milliseconds=100)),
    )
    async def connection_flaky(ctx: JobContext, _: empty_pb2.Empty) -> empty_pb2.Empty:
        """Raises ConnectionError (declared retryable) on its first attempt."""
        if ctx.info.attempt == 1:
            raise ConnectionError("connection reset by 10.0.0.7")
        return empty_pb2.Empty()

    return registry


def subprocess_registry() -> Registry:
    """For `lrod worker --jobs tests.jobs:subprocess_registry`."""
    return build_registry(Gates())
