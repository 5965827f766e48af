"""A finishing write goes before the claim its freed slot sets off, while
no job is known to wait (the last claim came back short): on SQLite's one
writer the operation then ends without waiting behind a claim's
transaction. Observed through the order of events (the store's commits, the
claims begun), never through time."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from google.protobuf import empty_pb2, wrappers_pb2

from lrod.app import Service
from lrod.settings import WorkerSettings
from lrod.store.protocol import Transition
from lrod.worker import WorkerPool
from tests.execution.support import wait_done
from tests.helpers import state_name, submit


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return WorkerSettings(concurrency=0)  # the test runs its own pool


class Events:
    """The store's claims begun and the operations whose end committed, in
    the order they happened; wraps the store for the pool."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.pool: WorkerPool | None = None
        self.seen: list[str] = []
        self.ended: dict[str, asyncio.Event] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        # Whether an outcome was being written as this claim began: attempts
        # whose handler returned, still held by the pool.
        pool = self.pool
        assert pool is not None
        writing = any(task not in pool._busy for task in pool._running)
        self.seen.append("claim while writing" if writing else "claim")
        return await self._store.claim(*args, **kwargs)

    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            if t.operation.done:
                self.seen.append(f"ended {t.operation.id}")
                self.ended.setdefault(t.operation.id, asyncio.Event()).set()


async def test_the_finish_of_a_freed_slot_commits_before_its_claim(
    service: Service, jobs, operations, gates
) -> None:
    events = Events(service.store)
    service.store.subscribe(events)
    # Two slots, one job: the claim comes back short. No poll during the test.
    settings = WorkerSettings(concurrency=2, lease=timedelta(seconds=10), poll_interval=60)
    pool = WorkerPool(events, service.hub, service.registry, settings)
    events.pool = pool
    pool.start()
    try:
        op = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="a"))
        op_id = op.name.removeprefix("operations/")
        await asyncio.wait_for(gates.started_event("a").wait(), 10)
        before = len(events.seen)
        gates.gate("a").set()
        await asyncio.wait_for(events.ended.setdefault(op_id, asyncio.Event()).wait(), 10)
        # The freed slot's claim waited for the finishing write's commit (a
        # claim set off by anything else, such as a late wake-up for the
        # Submit, waits likewise): none began while it was being written.
        async with asyncio.timeout(10):
            while "claim" not in events.seen[events.seen.index(f"ended {op_id}") :]:
                await asyncio.sleep(0.01)
        assert "claim while writing" not in events.seen[before:], events.seen
        # And the pool goes on claiming.
        after = await submit(jobs, "test.noop", empty_pb2.Empty())
        assert state_name(await wait_done(operations, after.name)) == "SUCCEEDED"
    finally:
        await pool.stop(1.0)
