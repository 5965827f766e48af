"""ChangeHub: WaitOperation's subscriptions sleep through progress and rows
that are not done, the row a write or a read hands over reaches every
subscriber once each, and rows never go back to an older version."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from lrod.domain.operation import Operation, Payload
from lrod.domain.states import State
from lrod.hub import ChangeHub

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _op(state: State, version: int) -> Operation:
    return Operation("op", "me", "t", state, Payload("x", b""), NOW, NOW, NOW, version=version)


async def test_progress_wakes_watchers_but_not_done_only_waiters() -> None:
    hub = ChangeHub()
    with hub.subscribe("op") as watcher, hub.subscribe("op", done_only=True) as waiter:
        hub.operations_changed(["op"], progressed={"op"})
        assert await watcher.wait(0)
        assert not await waiter.wait(0)


async def test_a_change_not_known_as_progress_wakes_every_subscriber() -> None:
    hub = ChangeHub()
    with hub.subscribe("op") as watcher, hub.subscribe("op", done_only=True) as waiter:
        hub.operations_changed(["op"], progressed={"other"})
        assert await watcher.wait(0)
        assert await waiter.wait(0)


async def test_the_written_row_is_handed_to_each_subscriber_once() -> None:
    hub = ChangeHub()
    done = _op(State.SUCCEEDED, 4)
    with hub.subscribe("op") as first, hub.subscribe("op", done_only=True) as second:
        hub.operations_changed(["op"], {"op": done})
        assert await first.wait(0)
        assert await second.wait(0)
        assert first.take_written() is done
        assert first.take_written() is None
        assert second.take_written() is done


async def test_a_later_change_without_a_row_replaces_the_handed_one() -> None:
    hub = ChangeHub()
    with hub.subscribe("op") as subscription:
        hub.operations_changed(["op"], {"op": _op(State.SUCCEEDED, 4)})
        hub.operations_changed(["op"])  # e.g. deleted since: the subscriber must read
        assert await subscription.wait(0)
        assert subscription.take_written() is None


async def test_done_only_waiters_sleep_through_a_row_that_is_not_done() -> None:
    hub = ChangeHub()
    with hub.subscribe("op") as watcher, hub.subscribe("op", done_only=True) as waiter:
        hub.deliver("op", _op(State.RUNNING, 2))
        assert await watcher.wait(0)
        assert not await waiter.wait(0)
        hub.deliver("op", _op(State.SUCCEEDED, 3))
        assert await waiter.wait(0)
        written = waiter.take_written()
        assert written is not None
        assert written.done


async def test_an_older_row_does_not_replace_a_newer_one() -> None:
    hub = ChangeHub()
    with hub.subscribe("op") as subscription:
        hub.deliver("op", _op(State.SUCCEEDED, 4))
        hub.deliver("op", _op(State.RUNNING, 3))  # a read that began before the finish
        assert await subscription.wait(0)
        written = subscription.take_written()
        assert written is not None
        assert written.version == 4


async def test_a_wait_ends_at_its_timeout_without_a_change() -> None:
    hub = ChangeHub()
    with hub.subscribe("op", done_only=True) as subscription:
        assert not await subscription.wait(0.01)
        hub.operations_changed(["op"])
        assert await subscription.wait(None)


async def test_work_that_arrived_before_the_wait_resolves_it_at_once() -> None:
    hub = ChangeHub()
    hub.work_available()
    loop = asyncio.get_running_loop()
    early = loop.create_future()
    hub.wake_on_work(early)
    assert early.done()
    hub.work_wait_ended(early)
    # The wait ended: the work seen is taken, the next waiter waits.
    later = loop.create_future()
    hub.wake_on_work(later)
    assert not later.done()
    hub.work_available()
    assert later.done()
    hub.work_wait_ended(later)


async def test_a_wait_ended_otherwise_is_not_woken_by_later_work() -> None:
    hub = ChangeHub()
    loop = asyncio.get_running_loop()
    waiter = loop.create_future()
    hub.wake_on_work(waiter)
    waiter.set_result(None)  # a freed slot, the timer or a stop woke it
    hub.work_wait_ended(waiter)
    hub.work_available()  # no waiter left: kept for the next wait
    following = loop.create_future()
    hub.wake_on_work(following)
    assert following.done()


async def test_a_cancel_reaches_the_callback_of_its_running_job_only() -> None:
    hub = ChangeHub()
    heard: list[str] = []
    hub.on_cancel("a", lambda: heard.append("a"))
    hub.on_cancel("b", lambda: heard.append("b"))
    hub.cancel_requested(["a", "unknown"])
    hub.forget_cancel("b")
    hub.cancel_requested(["b"])
    assert heard == ["a"]
