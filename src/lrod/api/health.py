"""grpc.health.v1 reflecting whether the database answers.

Every service on the port (and the server as a whole, "") is SERVING while
the database answers a ping and the process is not draining, NOT_SERVING
otherwise. Statuses are set only when they change, so Watch streams carry one
message per change.
"""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health, health_pb2

from lrod.domain.errors import LrodError
from lrod.metrics import Metrics
from lrod.store.protocol import OperationStore

log = logging.getLogger("lrod.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class HealthMonitor:
    """Pings the store every `interval` seconds (each ping limited to
    `timeout`, by default the interval) and sets the statuses accordingly."""

    def __init__(
        self,
        store: OperationStore,
        services: tuple[str, ...],
        interval: float = 2.0,
        timeout: float | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self._store = store
        self._services = ("", *services)
        self._interval = interval
        self._timeout = timeout or interval
        self._metrics = metrics or Metrics()
        self._draining = False
        self._database_up: bool | None = None
        self._status: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def serving(self) -> bool:
        return self._status is not None and self._status == int(SERVING)

    async def start(self) -> None:
        await self.check()
        self._task = asyncio.create_task(self._loop(), name="lrod-health")

    async def check(self) -> bool:
        """Ping the database once and update the statuses; True if it answered."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._store.ping()
            healthy, problem = True, ""
        except LrodError as error:
            healthy, problem = False, error.message
        except TimeoutError:
            healthy, problem = False, f"no answer within {self._timeout:g}s"
        self._metrics.database_up.set(1 if healthy else 0)
        if healthy != self._database_up:
            if healthy:
                log.info("the database answers")
            else:
                log.warning("the database does not answer: %s", problem)
            self._database_up = healthy
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
        if status == self._status:
            return
        self._status = status
        for service in self._services:
            await self.servicer.set(service, status)
