"""Waiters and watchers of one operation share one read per change.

When a change wakes ten watchers of one operation, one store read serves them
all. A read may be shared only by waiters it is new enough for: it is keyed
by the hub's generation of the operation when it started, so a waiter woken
by change g never joins a read that began before change g was announced.
"""

from __future__ import annotations

import asyncio
import functools

from lrod.clock import Clock
from lrod.domain.operation import Operation
from lrod.hub import ChangeHub
from lrod.store.protocol import OperationStore

_Key = tuple[str, str | None, int]


class SharedReads:
    def __init__(self, store: OperationStore, hub: ChangeHub, clock: Clock) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._inflight: dict[_Key, asyncio.Future[Operation]] = {}

    async def get(self, op_id: str, owner: str | None) -> Operation:
        """Read `op_id` for a caller subscribed to it in the hub."""
        key = (op_id, owner, self._hub.generation(op_id))
        read = self._inflight.get(key)
        if read is None:
            read = asyncio.ensure_future(self._store.get(op_id, owner, self._clock()))
            self._inflight[key] = read
            read.add_done_callback(functools.partial(self._forget, key))
        return await asyncio.shield(read)

    def _forget(self, key: _Key, read: asyncio.Future[Operation]) -> None:
        self._inflight.pop(key, None)
        if not read.cancelled():
            read.exception()  # retrieved here, so an unawaited failure is not reported
