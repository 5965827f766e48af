"""Group commit: concurrent callers share one transaction.

A call that arrives while a flush is under way waits for the next flush,
which takes everything queued by then (up to `max_batch`). A lone caller is
flushed at once, so latency without contention is unchanged; under load, one
commit (one fsync) serves many callers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")

Flush = Callable[[list[_T]], Awaitable[Sequence[_R | BaseException]]]


class GroupCommit(Generic[_T, _R]):
    def __init__(self, flush: Flush[_T, _R], max_batch: int = 256) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._queue: list[tuple[_T, asyncio.Future[_R]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: _T) -> _R:
        future: asyncio.Future[_R] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._drain(), name="lrod-group-commit")
        return await future

    async def _drain(self) -> None:
        while self._queue:
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            try:
                results = await self._flush([item for item, _ in batch])
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
