"""Workers announce themselves in the database, so that operators (the
console) see which are alive: a row per worker process, heartbeated while it
runs, removed when it stops, and removed by any other process once its
heartbeat is stale (a worker that died without saying so)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta

from lrod.clock import Clock, utcnow
from lrod.domain.errors import LrodError
from lrod.settings import PresenceSettings
from lrod.store.protocol import OperationStore, WorkerRecord

log = logging.getLogger("lrod.worker")


class WorkerPresence:
    def __init__(
        self,
        store: OperationStore,
        worker_id: str,
        slots: int,
        job_types: Sequence[str],
        running: Callable[[], int],
        settings: PresenceSettings | None = None,
        clock: Clock = utcnow,
    ) -> None:
        self._store = store
        self._running = running
        self.settings = settings or PresenceSettings()
        self._clock = clock
        now = clock()
        self._record = WorkerRecord(
            id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            slots=slots,
            running=0,
            job_types=tuple(job_types),
            started=now,
            heartbeat=now,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._announce()
        self._task = asyncio.create_task(self._loop(), name="lrod-worker-presence")

    async def _announce(self) -> None:
        record = self._record
        now = self._clock()
        try:
            await self._store.announce_worker(
                WorkerRecord(
                    record.id,
                    record.host,
                    record.pid,
                    record.slots,
                    self._running(),
                    record.job_types,
                    record.started,
                    now,
                )
            )
        except LrodError as error:
            log.warning("announcing the worker failed: %s", error.message)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.interval)
            now = self._clock()
            try:
                held = await self._store.worker_heartbeat(self._record.id, now, self._running())
                if not held:
                    # Cleaned up as stale (a long pause, an outage): say so again.
                    await self._announce()
                removed = await self._store.remove_stale_workers(
                    now - timedelta(seconds=self.settings.stale_after)
                )
            except LrodError as error:
                log.warning("worker heartbeat failed: %s", error.message)
                continue
            if removed:
                log.info("removed %d workers whose heartbeat stopped", removed)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:
            await self._store.remove_worker(self._record.id)
        except LrodError as error:
            log.warning("removing the worker's row failed: %s", error.message)
