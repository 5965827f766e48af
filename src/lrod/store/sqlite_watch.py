"""Cross-process wake-ups on SQLite, for the rare setup with a worker (or a
second server) in another process on the same file.

SQLite has no LISTEN/NOTIFY. `PRAGMA data_version` on a connection changes
only when another connection commits; asked on this process's single writer
connection, it therefore moves exactly when another process wrote. One query
per interval per process (not per waiter); when it moves, everyone re-reads.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from lrod.store.protocol import ChangeListener

log = logging.getLogger("lrod.store.sqlite_watch")

# How long a stop waits for a reading under way before cancelling it.
STOP_PATIENCE = 2.0


class SqliteChangeWatcher:
    def __init__(self, writer: AsyncEngine, hub: ChangeListener, interval: float = 0.5) -> None:
        self._writer = writer
        self._hub = hub
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="lrod-sqlite-watch")

    async def stop(self) -> None:
        """Stop between two readings: a reading cancelled while it checks out
        the writer's one pooled connection can cost the pool that connection,
        and the next write (the janitor's, at a stop right after the start)
        then waits for it until the store's close gives up on it."""
        if self._task is None:
            return
        self._stopping.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_PATIENCE)
        except TimeoutError:  # a reading stuck on a busy file: cancel it after all
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        # The first reading at once, not after a first interval: a write by
        # another process between our start and a late first reading would
        # be taken for the starting point and never announced.
        last: int | None = None
        while True:
            try:
                version = await self._data_version()
            except Exception as error:  # the file is busy or gone: try again later
                log.debug("data_version check failed: %r", error)
            else:
                if last is not None and version != last:
                    self._hub.everything_changed()
                last = version
            try:
                await asyncio.wait_for(self._stopping.wait(), self._interval)
                return
            except TimeoutError:
                pass

    async def _data_version(self) -> int:
        # Straight on the driver connection: no BEGIN IMMEDIATE, no write lock.
        async with self._writer.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection  # the aiosqlite connection
            cursor = await driver.execute("PRAGMA data_version")
            row = await cursor.fetchone()
            await cursor.close()
        return int(row[0])
