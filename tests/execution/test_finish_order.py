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


class HeldFinishes:
    """The store for the pool, each success of the operations in `held`
    written only once the test lets it go."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.held: set[str] = set()
        self.arrived: dict[str, asyncio.Event] = {}
        self.let_go: dict[str, asyncio.Event] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def succeed(self, claim: Any, *args: Any, **kwargs: Any) -> Any:
        op_id = claim.operation.id
        if op_id in self.held:
            self.arrived.setdefault(op_id, asyncio.Event()).set()
            await self.let_go.setdefault(op_id, asyncio.Event()).wait()
        return await self._store.succeed(claim, *args, **kwargs)


class AskProbe(WorkerPool):
    """The pool, telling when a claim waits for the outcomes being written."""

    asked: asyncio.Event

    async def _finishes_written(self) -> None:
        self.asked.set()
        await super()._finishes_written()


async def test_a_claim_waits_only_for_the_finishes_already_being_written(
    service: Service, jobs, operations, gates
) -> None:
    """Finishes that begin while a claim waits for the ones in flight do not
    hold it back too: with handlers returning one after another, it would
    otherwise wait for as long as they keep returning."""
    store = HeldFinishes(service.store)
    settings = WorkerSettings(concurrency=3, lease=timedelta(seconds=10), poll_interval=60)
    pool = AskProbe(store, service.hub, service.registry, settings)
    pool.asked = asyncio.Event()
    pool.start()
    try:
        a = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="a"))
        b = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="b"))
        a_id, b_id = (op.name.removeprefix("operations/") for op in (a, b))
        store.held |= {a_id, b_id}
        for key in "ab":
            await asyncio.wait_for(gates.started_event(key).wait(), 10)
        # a returns: its slot's claim (the last claim came back short) waits
        # for a's finish, which is held.
        pool.asked.clear()
        gates.gate("a").set()
        await asyncio.wait_for(store.arrived.setdefault(a_id, asyncio.Event()).wait(), 10)
        await asyncio.wait_for(pool.asked.wait(), 10)
        # A job comes; b returns after the claim was asked, and its finish
        # stays held; a's is written.
        c = await submit(jobs, "test.noop", empty_pb2.Empty())
        gates.gate("b").set()
        await asyncio.wait_for(store.arrived.setdefault(b_id, asyncio.Event()).wait(), 10)
        store.let_go.setdefault(a_id, asyncio.Event()).set()
        # The claim goes ahead without waiting for b's finish.
        assert state_name(await wait_done(operations, c.name)) == "SUCCEEDED"
        assert not store.let_go.setdefault(b_id, asyncio.Event()).is_set()
    finally:
        for event in store.let_go.values():
            event.set()
        await pool.stop(1.0)
