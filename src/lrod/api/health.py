"""grpc.health.v1 reflecting whether the database answers."""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health, health_pb2

from lrod.domain.errors import LrodError
from lrod.store.protocol import OperationStore

log = logging.getLogger("lrod.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthMonitor:
    """Pings the store every `interval` seconds and sets the status of the
    whole server ("") and of each service accordingly."""

    def __init__(
        self, store: OperationStore, services: tuple[str, ...], interval: float = 2.0
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self._store = store
        self._services = ("", *services)
        self._interval = interval
        self._draining = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="lrod-health")

    async def check(self) -> bool:
        try:
            async with asyncio.timeout(self._interval):
                await self._store.ping()
            healthy = True
        except (LrodError, TimeoutError) as error:
            log.warning("database check failed: %s", error)
            healthy = False
        await self._set(SERVING if healthy and not self._draining else NOT_SERVING)
        return healthy

    async def drain(self) -> None:
        self._draining = True
        await self._set(NOT_SERVING)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.check()

    async def _set(self, status: int) -> None:
        for service in self._services:
            await self.servicer.set(service, status)
