"""SharedReads: one read per change for all waiters, never a stale one; the
hub's reader reads every changed operation in one read and hands the rows
to all their subscribers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from lrod.domain.errors import NotFound
from lrod.domain.operation import Operation, Payload
from lrod.domain.states import State
from lrod.hub import ChangeHub
from lrod.shared_reads import SharedReads

NOW = datetime(2026, 1, 1, tzinfo=UTC)


class SlowStore:
    """Counts reads; each read returns the version current when it started."""

    def __init__(self) -> None:
        self.reads = 0
        self.version = 1
        self.release = asyncio.Event()
        self.fail = False
        self.many: list[set[str]] = []

    async def get_many(self, ids: set[str], now: datetime) -> dict[str, Operation]:
        self.many.append(set(ids))
        version = self.version
        await self.release.wait()
        if self.fail:
            raise ConnectionError("the database went away")
        return {
            op_id: Operation(
                op_id, "me", "t", State.RUNNING, Payload("x", b""), NOW, NOW, NOW, version=version
            )
            for op_id in ids
            if op_id != "gone"
        }

    async def get(self, op_id: str, owner: str, now: datetime) -> Operation:
        self.reads += 1
        version = self.version
        await self.release.wait()
        if self.fail:
            raise NotFound("gone")
        return Operation(
            op_id, owner, "t", State.RUNNING, Payload("x", b""), NOW, NOW, NOW, version=version
        )


def _reads(store: SlowStore, hub: ChangeHub) -> SharedReads:
    shared: Any = store
    return SharedReads(shared, hub, lambda: NOW)


async def test_concurrent_waiters_share_one_read() -> None:
    store, hub = SlowStore(), ChangeHub()
    reads = _reads(store, hub)
    with hub.subscribe("op"):
        waiting = [asyncio.ensure_future(reads.get("op", "me")) for _ in range(10)]
        await asyncio.sleep(0)
        store.release.set()
        results = await asyncio.gather(*waiting)
    assert store.reads == 1
    assert {r.version for r in results} == {1}


async def test_a_waiter_woken_by_a_change_does_not_join_an_older_read() -> None:
    store, hub = SlowStore(), ChangeHub()
    reads = _reads(store, hub)
    with hub.subscribe("op"):
        early = asyncio.ensure_future(reads.get("op", "me"))
        while store.reads == 0:  # until the early read has begun
            await asyncio.sleep(0)
        store.version = 2
        hub.operations_changed(["op"])  # committed after the early read began
        late = asyncio.ensure_future(reads.get("op", "me"))
        await asyncio.sleep(0)
        store.release.set()
        assert (await early).version == 1
        assert (await late).version == 2
    assert store.reads == 2


async def test_failures_reach_every_sharer() -> None:
    store, hub = SlowStore(), ChangeHub()
    store.fail = True
    reads = _reads(store, hub)
    with hub.subscribe("op"):
        waiting = [asyncio.ensure_future(reads.get("op", "me")) for _ in range(3)]
        await asyncio.sleep(0)
        store.release.set()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(o, NotFound) for o in outcomes)
    assert store.reads == 1


async def test_owners_do_not_share() -> None:
    store, hub = SlowStore(), ChangeHub()
    reads = _reads(store, hub)
    with hub.subscribe("op"):
        mine = asyncio.ensure_future(reads.get("op", "me"))
        theirs = asyncio.ensure_future(reads.get("op", "you"))
        await asyncio.sleep(0)
        store.release.set()
        assert (await mine).owner == "me"
        assert (await theirs).owner == "you"
    assert store.reads == 2


def test_generation_is_forgotten_with_the_last_subscriber() -> None:
    hub = ChangeHub()
    with hub.subscribe("op"):
        hub.operations_changed(["op", "unwatched"])
        assert hub.generation("op") == 1
    with hub.subscribe("op"):
        assert hub.generation("op") == 0
    assert "unwatched" not in hub._generations  # never subscribed: nothing kept


async def test_one_read_hands_every_changed_operation_to_all_its_subscribers() -> None:
    store, hub = SlowStore(), ChangeHub()
    _reads(store, hub)
    store.release.set()
    with (
        hub.subscribe("a") as a1,
        hub.subscribe("a") as a2,
        hub.subscribe("b") as b,
        hub.subscribe("gone") as gone,
    ):
        hub.operations_changed(["a", "b", "gone", "unwatched"])
        for subscription in (a1, a2, b, gone):
            assert await subscription.wait(5)
        assert store.many == [{"a", "b", "gone"}]
        assert store.reads == 0
        for subscription, op_id in ((a1, "a"), (a2, "a"), (b, "b")):
            row = subscription.take_written()
            assert row is not None
            assert row.id == op_id
        assert gone.take_written() is None  # not found: it reads for itself


async def test_a_change_announced_during_a_read_is_read_again() -> None:
    store, hub = SlowStore(), ChangeHub()
    _reads(store, hub)
    with hub.subscribe("a") as subscription:
        hub.operations_changed(["a"])
        while not store.many:  # until the first read has begun
            await asyncio.sleep(0)
        store.version = 2
        hub.operations_changed(["a"])  # committed after that read began
        store.release.set()
        while len(store.many) < 2:
            await asyncio.sleep(0)
        assert await subscription.wait(5)
        while subscription.written is None or subscription.written.version < 2:
            await asyncio.sleep(0)
        assert subscription.take_written() is not None
    assert store.many == [{"a"}, {"a"}]


async def test_a_failed_read_wakes_subscribers_to_read_for_themselves() -> None:
    store, hub = SlowStore(), ChangeHub()
    store.fail = True
    reads = _reads(store, hub)
    store.release.set()
    with hub.subscribe("a") as subscription:
        hub.operations_changed(["a"])
        assert await subscription.wait(5)
        assert subscription.take_written() is None
        with pytest.raises(NotFound):
            await reads.get("a", "me")  # its own read answers the error
