"""In-process wake-ups: who waits on which operation, and whether work arrived.

The store calls the hub after each commit; waiters, watchers and workers wait
on it instead of polling the database. On PostgreSQL a listener feeds the same
hub from other processes' notifications.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime

from lrod.domain.operation import Operation

_MAX_TIMER = 60.0


class Subscription:
    """Set whenever the operation changed since the last `wait` returned.

    `done_only` (WaitOperation): not woken by changes known not to end the
    operation (progress), since its waiter would only read and wait again.
    `written` is the operation as the last in-process write left it, when
    that write handed it over: the subscriber may use it instead of a read."""

    __slots__ = ("_event", "done_only", "written")

    def __init__(self, done_only: bool = False) -> None:
        self._event = asyncio.Event()
        self.done_only = done_only
        self.written: Operation | None = None

    def notify(self, written: Operation | None = None) -> None:
        self.written = written
        self._event.set()

    async def wait(self, timeout: float | None) -> bool:
        """True if a change arrived, False on timeout."""
        if not self._event.is_set():
            try:
                async with asyncio.timeout(timeout):
                    await self._event.wait()
            except TimeoutError:
                return False
        self._event.clear()
        return True

    def take_written(self) -> Operation | None:
        """The row handed over with the last change, once; None: read it."""
        written, self.written = self.written, None
        return written


class ChangeHub:
    def __init__(self) -> None:
        self._subscribers: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._generations: defaultdict[str, int] = defaultdict(int)
        self._cancel_handlers: dict[str, asyncio.Event] = {}
        self._work = asyncio.Event()

    # -- what the store reports -------------------------------------------
    def operations_changed(
        self,
        ids: Iterable[str],
        written: Mapping[str, Operation] | None = None,
        progressed: Container[str] = (),
    ) -> None:
        """`written`: rows as the committing write returned them (handed to
        subscribers, which then need no read); `progressed`: ids whose only
        change was progress (no done-only subscriber is woken for them)."""
        for op_id in ids:
            subscribers = self._subscribers.get(op_id)
            if not subscribers:
                continue
            self._generations[op_id] += 1
            row = written.get(op_id) if written else None
            quiet = op_id in progressed
            for subscription in subscribers:
                if quiet and subscription.done_only:
                    continue
                subscription.notify(row)

    def cancel_requested(self, ids: Iterable[str]) -> None:
        for op_id in ids:
            event = self._cancel_handlers.get(op_id)
            if event is not None:
                event.set()

    def work_available(self, due: datetime | None = None) -> None:
        delay = 0.0 if due is None else (due - datetime.now(UTC)).total_seconds()
        if delay <= 0:
            self._work.set()
        elif delay < _MAX_TIMER:
            # Far-off work is found by the workers' periodic poll instead.
            asyncio.get_running_loop().call_later(delay, self._work.set)

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

    @contextmanager
    def cancellation(self, op_id: str) -> Iterator[asyncio.Event]:
        """An event set when CancelOperation reaches the running job `op_id`."""
        event = asyncio.Event()
        self._cancel_handlers[op_id] = event
        try:
            yield event
        finally:
            self._cancel_handlers.pop(op_id, None)

    async def wait_for_work(self, timeout: float) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self._work.wait()
        except TimeoutError:
            return
        finally:
            self._work.clear()

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
