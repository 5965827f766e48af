"""The reads behind wake-ups: one read per change for every subscriber.

When a change names operations whose subscribers got no row with it (another
process wrote it, or it is not done yet), the hub asks this reader, which
reads all of them in one statement (`OperationStore.get_many`) and hands each
row to every subscriber of its operation: ten thousand watchers of a thousand
operations that finished together cost one read per notification, not one
per operation or per stream. Reads run one after another, each taking every
operation announced before it began, so the rows a subscriber is handed
never go back in time.

A subscriber still reads for itself when it has no row: its first read, a
WaitOperation that timed out, an operation the reader did not find (deleted,
expired, not the caller's: its own read gives the right error). Those reads
are shared too: keyed by the hub's generation of the operation when they
started, so a waiter woken by change g never joins a read that began before
change g was announced.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from lrod.clock import Clock
from lrod.domain.operation import Operation
from lrod.hub import ChangeHub
from lrod.store.protocol import OperationStore

log = logging.getLogger("lrod.hub")

_Key = tuple[str, str | None, int]


class SharedReads:
    def __init__(self, store: OperationStore, hub: ChangeHub, clock: Clock) -> None:
        self._store = store
        self._hub = hub
        self._clock = clock
        self._inflight: dict[_Key, asyncio.Future[Operation]] = {}
        self._reading: asyncio.Task[None] | None = None
        hub.reader = self

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

    # -- the hub's reader -------------------------------------------------
    def rows_wanted(self) -> None:
        if self._reading is None or self._reading.done():
            self._reading = asyncio.get_running_loop().create_task(
                self._read_changed(), name="lrod-wake-reads"
            )

    async def _read_changed(self) -> None:
        hub = self._hub
        while True:
            ids = hub.take_unread()
            if not ids:
                return
            try:
                rows = await self._store.get_many(ids, self._clock())
            except asyncio.CancelledError:
                raise
            except Exception as error:  # their own reads will meet it and answer it
                log.debug("reading changed operations failed: %r", error)
                rows = {}
            for op_id in ids:
                hub.deliver(op_id, rows.get(op_id))
