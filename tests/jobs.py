"""Job types the tests use besides the built-in examples."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from google.protobuf import empty_pb2, wrappers_pb2

from lrod import JobContext, Registry
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

    return registry
