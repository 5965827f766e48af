"""Enqueue N jobs from concurrent clients and wait until all are done: the
end-to-end measure every queue gets, lrod and peers alike."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

POLL = 0.05


@dataclass(frozen=True)
class Drive:
    jobs: int
    seconds: float
    enqueue_seconds: float

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


async def drive(
    enqueue: Callable[[], Awaitable[object]],
    done: Callable[[], Awaitable[int]],
    *,
    jobs: int,
    clients: int,
    timeout: float,
) -> Drive:
    """From the first enqueue until `done()` counts `jobs`, bounded by `timeout`."""
    began = time.monotonic()
    deadline = began + timeout
    remaining = iter(range(jobs))

    async def client() -> None:
        for _ in remaining:
            await enqueue()

    submitting = asyncio.gather(*(client() for _ in range(clients)))
    enqueued: float | None = None
    try:
        while True:
            if enqueued is None and submitting.done():
                submitting.result()
                enqueued = time.monotonic() - began
            finished = await done()
            now = time.monotonic()
            if finished >= jobs:
                await submitting
                return Drive(jobs, now - began, enqueued if enqueued is not None else now - began)
            if now > deadline:
                raise TimeoutError(f"{finished} of {jobs} jobs done after {timeout:.0f} s")
            await asyncio.sleep(POLL)
    finally:
        if not submitting.done():
            submitting.cancel()
            with contextlib.suppress(BaseException):
                await submitting
