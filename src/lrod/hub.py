"""In-process wake-ups: who waits on which operation, and whether work arrived.

The store calls the hub after each commit; waiters, watchers and workers wait
on it instead of polling the database. On PostgreSQL a listener feeds the same
hub from other processes' notifications.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Protocol

from lrod.domain.operation import Operation

_MAX_TIMER = 60.0


class Subscription:
    """Set whenever the operation changed since the last `wait` returned.

    `done_only` (WaitOperation): woken only by changes that may end the
    operation (not by progress, nor by a row handed over that is not done),
    since its waiter would only read and wait again.
    `written` is the newest row handed over with a change (by the write that
    made it, or by the one read the hub's reader did for every subscriber);
    None: the subscriber reads for itself. Rows only move forward: one older
    than the row held (a lower version) is ignored."""

    __slots__ = ("_changed", "_waiter", "done_only", "written")

    def __init__(self, done_only: bool = False) -> None:
        self._changed = False
        self._waiter: asyncio.Future[None] | None = None
        self.done_only = done_only
        self.written: Operation | None = None

    def notify(self, written: Operation | None = None) -> None:
        held = self.written
        if written is not None and held is not None and written.version < held.version:
            return
        self.written = written
        self._changed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None) -> bool:
        """True if a change arrived, False on timeout."""
        if not self._changed:
            # A bare future and one timer: no Event, no timeout context.
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self._changed:
                return False
        self._changed = False
        return True

    def take_written(self) -> Operation | None:
        """The row handed over with the last change, once; None: read it."""
        written, self.written = self.written, None
        return written


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class RowReader(Protocol):
    """Reads the rows of changed operations for their subscribers (the
    manager's SharedReads): told when the hub has ids waiting for a read."""

    def rows_wanted(self) -> None: ...


class ChangeHub:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._generations: defaultdict[str, int] = defaultdict(int)
        # Running jobs of this process: called when a cancel reaches them.
        self._cancel_handlers: dict[str, Callable[[], None]] = {}
        # Work arrived since the last wait ended (as an Event's flag), and the
        # futures of the claim loops waiting for it.
        self._work = False
        self._work_waiters: list[asyncio.Future[None]] = []
        # Counts every announcement of due work (at once, or when its timer
        # fires): a worker pool tells from it whether work may have arrived
        # since its last claim came back short (WorkerPool.reserve).
        self.work_announced = 0
        # Changed operations whose subscribers wait for the reader's row.
        self._unread: set[str] = set()
        self.reader: RowReader | None = None

    # -- what the store reports -------------------------------------------
    def operations_changed(
        self,
        ids: Iterable[str],
        written: Mapping[str, Operation] | None = None,
        progressed: Container[str] = (),
    ) -> None:
        """`written`: rows as the committing write returned them (handed to
        subscribers, which then need no read); `progressed`: ids whose only
        change was progress (no done-only subscriber is woken for them).
        Without a row, a reader (if there is one) reads every such operation
        in one read and hands each row to all its subscribers (`deliver`);
        without a reader, the subscribers are woken to read for themselves."""
        reader = self.reader
        wanted = False
        for op_id in ids:
            subscribers = self._subscribers.get(op_id)
            if not subscribers:
                continue
            self._generations[op_id] += 1
            row = written.get(op_id) if written else None
            if row is not None:
                self.deliver(op_id, row)
                continue
            quiet = op_id in progressed
            if reader is not None:
                if not quiet or not all(s.done_only for s in subscribers):
                    self._unread.add(op_id)
                    wanted = True
                continue
            for subscription in subscribers:
                if quiet and subscription.done_only:
                    continue
                subscription.notify()
        if wanted:
            assert reader is not None
            reader.rows_wanted()

    def take_unread(self) -> set[str]:
        """The operations changed since the reader's last read began: a read
        started now reflects every change announced for them."""
        unread, self._unread = self._unread, set()
        return unread

    def deliver(self, op_id: str, row: Operation | None) -> None:
        """Hand `row` (as read or written after the change; None: read it
        yourself) to every subscriber of `op_id`. Done-only subscribers are
        not woken by a row that is not done."""
        subscribers = self._subscribers.get(op_id)
        if not subscribers:
            return
        if row is not None and not row.done:
            for subscription in subscribers:
                if not subscription.done_only:
                    subscription.notify(row)
            return
        for subscription in subscribers:
            subscription.notify(row)

    def cancel_requested(self, ids: Iterable[str]) -> None:
        for op_id in ids:
            handler = self._cancel_handlers.get(op_id)
            if handler is not None:
                handler()

    def work_available(self, due: datetime | None = None) -> None:
        delay = 0.0 if due is None else (due - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            self._work_arrived()
        elif delay < _MAX_TIMER:
            # Far-off work is found by the workers' periodic poll instead.
            asyncio.get_running_loop().call_later(delay, self._work_arrived)

    def _work_arrived(self) -> None:
        self.work_announced += 1
        self._work = True
        waiters, self._work_waiters = self._work_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def everything_changed(self) -> None:
        """After a lost notification channel: wake everyone to re-read."""
        self.operations_changed(list(self._subscribers))
        self.work_available()

    # -- who listens ------------------------------------------------------
    @contextmanager
    def subscribe(self, op_id: str, *, done_only: bool = False) -> Iterator[Subscription]:
        subscription = Subscription(done_only)
        self._subscribers[op_id].add(subscription)
        try:
            yield subscription
        finally:
            subscribers = self._subscribers[op_id]
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[op_id]
                self._generations.pop(op_id, None)

    def generation(self, op_id: str) -> int:
        """How many changes of a subscribed operation were announced so far:
        a read started at generation g reflects every one of them."""
        return self._generations[op_id]

    def on_cancel(self, op_id: str, handler: Callable[[], None]) -> None:
        """Call `handler` (on the loop, at once) when CancelOperation reaches
        the running job `op_id`, until `forget_cancel(op_id)`: a callback, so
        that no task per running job waits for a cancel that rarely comes."""
        self._cancel_handlers[op_id] = handler

    def forget_cancel(self, op_id: str) -> None:
        self._cancel_handlers.pop(op_id, None)

    def wake_on_work(self, waiter: asyncio.Future[None]) -> None:
        """Resolve `waiter` when work arrives, at once if some arrived since
        the last `work_wait_ended`: the claim loop waits on one future for
        work, a freed slot, its poll timer or a stop, with no task per wait."""
        if self._work:
            if not waiter.done():
                waiter.set_result(None)
            return
        self._work_waiters.append(waiter)

    def work_wait_ended(self, waiter: asyncio.Future[None]) -> None:
        """The wait on `waiter` is over, whatever ended it: the work seen so
        far is the waiter's to claim (as an Event cleared after its wait)."""
        self._work = False
        with suppress(ValueError):
            self._work_waiters.remove(waiter)

    async def wait_for_work(self, timeout: float) -> None:
        """Until work arrives or `timeout` seconds pass."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        self.wake_on_work(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self.work_wait_ended(waiter)

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
