"""A service with webhooks on, for the webhook tests."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import grpc
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, empty_pb2

from lrod.app import Service
from lrod.jobs.registry import JobType
from lrod.manager import ManagerSettings
from lrod.settings import Settings, WebhookSettings
from lrod.v1 import job_service_pb2, job_service_pb2_grpc, operation_metadata_pb2
from lrod.worker import WorkerSettings
from tests.helpers import metadata, pack
from tests.jobs import Gates, build_registry
from tests.webhooks.receiver import SECRETS

Delivery = operation_metadata_pb2.WebhookDelivery

# Retries after 0.2, 0.4 and 0.8 s (each +-20%): four attempts in all.
SHORT = WebhookSettings(
    secrets=SECRETS,
    schemes="https,http",
    allow="127.0.0.1",
    schedule="0.2,0.4,0.8",
    timeout=1.0,
    poll_interval=0.1,
)


class FixedResolver(AbstractResolver):
    """Names of the tests' own; anything else by the system resolver. Only
    resolution: a refused address is never connected to."""

    def __init__(self, names: dict[str, str]) -> None:
        self._names = names
        self._system = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host in self._names:
            address = self._names[host]
            inet = socket.AF_INET6 if ":" in address else socket.AF_INET
            return [
                ResolveResult(hostname=host, host=address, port=port, family=inet, proto=0, flags=0)
            ]
        return await self._system.resolve(host, port, family)

    async def close(self) -> None:
        await self._system.close()


class Hooked:
    """A running service with webhooks, and stubs on it."""

    def __init__(self, service: Service, channel: grpc.aio.Channel) -> None:
        self.service = service
        self.jobs = job_service_pb2_grpc.JobServiceStub(channel)
        self.operations = operations_pb2_grpc.OperationsStub(channel)

    async def submit(
        self, url: str, job_type: str = "test.noop", message: Any = None, **fields: Any
    ) -> operations_pb2.Operation:
        request = job_service_pb2.SubmitRequest(
            job_type=job_type,
            input=pack(message if message is not None else empty_pb2.Empty()),
            notification=job_service_pb2.NotificationTarget(url=url),
            **fields,
        )
        return await self.jobs.Submit(request)

    async def get(self, name: str) -> operations_pb2.Operation:
        return await self.operations.GetOperation(operations_pb2.GetOperationRequest(name=name))

    async def delivery(self, name: str) -> Delivery:
        return metadata(await self.get(name)).webhook

    async def wait_delivery(
        self, name: str, predicate: Callable[[Delivery], bool], seconds: float = 20
    ) -> Delivery:
        async with asyncio.timeout(seconds):
            while True:
                found = await self.delivery(name)
                if predicate(found):
                    return found
                await asyncio.sleep(0.05)

    async def ended(self, name: str, seconds: float = 20) -> Delivery:
        """Wait until the delivery is delivered or failed."""
        final = (Delivery.STATE_DELIVERED, Delivery.STATE_FAILED)
        return await self.wait_delivery(name, lambda d: d.state in final, seconds)

    async def wait_done(self, name: str) -> operations_pb2.Operation:
        async with asyncio.timeout(20):
            while True:
                op = await self.operations.WaitOperation(
                    operations_pb2.WaitOperationRequest(
                        name=name, timeout=duration_pb2.Duration(seconds=2)
                    )
                )
                if op.done:
                    return op


def hooked_settings(database_url: str, webhooks: WebhookSettings, **fields: Any) -> Settings:
    values: dict[str, Any] = {
        "address": "127.0.0.1:0",
        "database_url": database_url,
        "workers": WorkerSettings(
            concurrency=4,
            lease=timedelta(seconds=5),
            poll_interval=0.2,
            progress_interval=0.05,
            cancel_grace=0.5,
            drain_grace=2.0,
        ),
        "manager": ManagerSettings(max_wait=2.0),
        "janitor_interval": 0.2,
        "webhooks": webhooks,
    }
    return Settings(**(values | fields))


@asynccontextmanager
async def hooked(
    database_url: str,
    webhooks: WebhookSettings = SHORT,
    resolver: AbstractResolver | None = None,
    extra: Sequence[JobType] = (),
    **fields: Any,
) -> AsyncIterator[Hooked]:
    """`extra`: job types registered beside the test ones."""
    gates = Gates()
    registry = build_registry(gates)
    for job_type in extra:
        registry.register(job_type)
    service = Service(hooked_settings(database_url, webhooks, **fields), registry, resolver)
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            yield Hooked(service, channel)
    finally:
        for gate in gates.gates.values():
            gate.set()
        await service.stop(1.0)


def shorter(**changes: Any) -> WebhookSettings:
    return replace(SHORT, **changes)
