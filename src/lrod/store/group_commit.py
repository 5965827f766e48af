"""Group commit: concurrent callers share one transaction.

A call that arrives while a flush is under way waits for the next flush,
which takes everything queued by then (up to `max_batch`). A lone caller is
flushed at once, so latency without contention is unchanged; under load, one
commit (one fsync) serves many callers.

One bad member never fails the others: a flush that raises (its transaction
rolled back, nothing written) is split in halves and each half flushed again,
down to the one member that fails alone. Only an error that every member
would meet alike (`shared`: the database is unavailable) fails the batch at
once. Any batched write reuses this rule through `flush_isolated`.

With `linger`, a writer under load (its recent batches averaged at least
`linger_from` members) waits a moment before its next flush, no longer than
its last flush took and never more than `linger`, so that one commit takes
more callers: each flush costs a statement, a commit and (SQLite) a hop or
(PostgreSQL) a round trip and a NOTIFY whatever its size, and with many
clients the batches stayed small. A writer that was idle flushes its first
caller at once, so a lone caller waits no longer. How long and from what
batch size is the dialect's (`dialect.create_linger`).

With `flushes` above one, a call that arrives while every flush is out
(and that `beside` says may go out beside them) starts another flush, each
its own transaction on its own connection, up to `flushes` at once; it takes
everything queued by then. Each such drain then goes on as the first does,
taking the next batch when its flush returns, until the queue is empty. The
database works on one batch while the next is sent and committed, where one
flush at a time left the two sides taking turns. Only where the members'
writes are fenced per row, so that two transactions in flight cannot
conflict (the worker's writes on PostgreSQL, where only a claim starts a
second flush: `dialect.worker_flushes`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

# Mean batch size (recent flushes) from which a writer with `linger` waits
# unless given its own `linger_from` (SQLite's creates use this one,
# PostgreSQL's 1.5: dialect.create_linger).
LINGER_FROM = 4.0
# Weight of the newest flush in the running means.
_RECENT = 0.2

Flush = Callable[[list[_T]], Awaitable[Sequence[_R | BaseException]]]


def _never_shared(_error: BaseException) -> bool:
    return False


async def flush_isolated(
    flush: Flush[_T, _R],
    items: list[_T],
    shared: Callable[[BaseException], bool] = _never_shared,
) -> list[_R | BaseException]:
    """`flush(items)`, one result per item. If the flush raises, its items
    are flushed again in halves, so the error reaches only the member(s) that
    cause it; an error `shared` says all would meet reaches them all at once.
    `flush` must write nothing when it raises (one transaction)."""
    try:
        results = list(await flush(items))
    except Exception as error:
        if len(items) == 1 or shared(error):
            return [error] * len(items)
        middle = len(items) // 2
        first = await flush_isolated(flush, items[:middle], shared)
        return first + await flush_isolated(flush, items[middle:], shared)
    if len(results) != len(items):
        raise RuntimeError(f"flush returned {len(results)} results for {len(items)} items")
    return results


class GroupCommit(Generic[_T, _R]):
    def __init__(
        self,
        flush: Flush[_T, _R],
        max_batch: int = 256,
        shared: Callable[[BaseException], bool] = _never_shared,
        track: Callable[[asyncio.Task[None]], None] | None = None,
        linger: float = 0.0,
        linger_from: float = LINGER_FROM,
        flushes: int = 1,
        beside: Callable[[_T], bool] = lambda _item: True,
    ) -> None:
        self._flush = flush
        self._flushes = max(1, flushes)
        self._beside = beside
        self._linger = linger
        self._linger_from = linger_from
        # Running means of the batch size and of a flush's duration.
        self._mean_batch = 1.0
        self._mean_flush = 0.0
        # Told of each flushing task (the store's close waits for them).
        self._track = track
        self._max_batch = max_batch
        self._shared = shared
        self._queue: list[tuple[_T, asyncio.Future[_R]]] = []
        # The draining tasks (at most `flushes`), and how many of them are
        # out with a flush now.
        self._drains: set[asyncio.Task[None]] = set()
        self._flushing = 0

    async def submit(self, item: _T) -> _R:
        """The item's result once its batch is flushed. A caller that is
        cancelled meanwhile leaves the item to its flush: the flush runs in
        a task of its own, so no transaction is abandoned half-way."""
        return await self.enqueue(item)

    def enqueue(self, item: _T) -> asyncio.Future[_R]:
        """`submit`, the item queued now (its place in the next batch taken
        at the call, not when the caller first awaits): the future of its
        result."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        drains = len(self._drains)
        if not drains or (self._flushing == drains < self._flushes and self._beside(item)):
            drain = asyncio.create_task(self._drain(), name="lrod-group-commit")
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
            if self._track is not None:
                self._track(drain)
        return future

    async def _drain(self) -> None:
        try:
            await self._drain_queue()
        finally:
            # At once, not in a done callback a turn later: a call queued
            # in between must not count on this task to take it.
            self._drains.discard(asyncio.current_task())

    async def _drain_queue(self) -> None:
        first = True
        while self._queue:
            if not first:
                await self._gather()
            first = False
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            started = time.perf_counter()
            self._flushing += 1
            try:
                results = await flush_isolated(
                    self._flush, [item for item, _ in batch], self._shared
                )
            except Exception as error:
                results = [error] * len(batch)
            finally:
                self._flushing -= 1
            self._mean_batch += _RECENT * (len(batch) - self._mean_batch)
            self._mean_flush += _RECENT * (time.perf_counter() - started - self._mean_flush)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def _gather(self) -> None:
        """Under load, a moment for more callers to join the next flush."""
        if (
            self._linger <= 0
            or self._mean_batch < self._linger_from
            or len(self._queue) >= self._max_batch
        ):
            return
        await asyncio.sleep(min(self._linger, self._mean_flush))

    async def wait_idle(self) -> None:
        while self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
