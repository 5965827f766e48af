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
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

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
    ) -> None:
        self._flush = flush
        # Told of each flushing task (the store's close waits for them).
        self._track = track
        self._max_batch = max_batch
        self._shared = shared
        self._queue: list[tuple[_T, asyncio.Future[_R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: _T) -> _R:
        """The item's result once its batch is flushed. A caller that is
        cancelled meanwhile leaves the item to its flush: the flush runs in
        a task of its own, so no transaction is abandoned half-way."""
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain(), name="lrod-group-commit")
            if self._track is not None:
                self._track(self._flusher)
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                results = await flush_isolated(
                    self._flush, [item for item, _ in batch], self._shared
                )
            except Exception as error:
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def wait_idle(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
