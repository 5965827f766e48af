"""JobContext.stopped is made at its first use (a stop, or a handler that
looks), from either side: the loop that stops the attempt and the thread of
a sync handler see one Event."""

from __future__ import annotations

import asyncio
import threading

import pytest

from lrod.jobs.context import JobCancelled, JobContext, JobInfo


def _context() -> JobContext:
    return JobContext(JobInfo("operations/x", "t", 1, 3, {}), asyncio.get_running_loop())


async def test_a_stop_before_the_handler_looks_is_seen_by_it() -> None:
    ctx = _context()
    ctx.raise_if_cancelled()  # not stopped: nothing made, nothing raised
    ctx.stopped.set()  # the attempt stops it (its first use)
    seen: list[bool] = []
    thread = threading.Thread(target=lambda: seen.append(ctx.stopped.is_set()))
    thread.start()
    thread.join()
    assert seen == [True]
    with pytest.raises(JobCancelled):
        ctx.raise_if_cancelled()


async def test_a_handler_waiting_on_it_first_is_woken_by_the_stop() -> None:
    ctx = _context()
    waiting = threading.Event()
    woken: list[bool] = []

    def handler() -> None:
        stopped = ctx.stopped  # the handler's look makes it
        waiting.set()
        woken.append(stopped.wait(10))

    thread = threading.Thread(target=handler)
    thread.start()
    assert waiting.wait(10)
    ctx.stopped.set()
    thread.join()
    assert woken == [True]
    assert ctx.stopped is ctx.stopped
