"""Enqueue N jobs from concurrent clients and wait until all are done: the
end-to-end measure every queue gets, lrod and peers alike."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# The shortest and longest wait between two counts of the jobs done. The
# count is a query on the measured database (on lrod's table a scan of every
# row version: 6 ms each at 20,000 jobs, a tenth of a core at one count per
# 50 ms), so it waits longer while many jobs are left, and 50 ms near the end.
POLL = 0.05
MOST_POLL = 0.5


def poll_after(finished: int, jobs: int, elapsed: float) -> float:
    """How long to wait before counting again: a quarter of the time left at
    the rate so far (an end overshot only if the rate more than quadruples),
    between POLL and MOST_POLL."""
    if finished <= 0 or elapsed <= 0:
        return POLL
    left = (jobs - finished) * elapsed / finished
    return min(MOST_POLL, max(POLL, left / 4))


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
            await asyncio.sleep(poll_after(finished, jobs, now - began))
    finally:
        if not submitting.done():
            submitting.cancel()
            with contextlib.suppress(BaseException):
                await submitting
