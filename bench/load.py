"""Closed-loop load: N concurrent clients, each calling as soon as its last
call returned, for a bounded time and count."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

# A client stops after this many calls even if its window is not over.
MAX_CALLS_PER_CLIENT = 2_000_000


@dataclass
class LoadResult:
    completed: int
    seconds: float
    errors: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0


Call = Callable[[int], Awaitable[object]]


async def closed_loop(call: Call, *, clients: int, warmup: float, window: float) -> LoadResult:
    """Run `clients` loops of `call(client_index)`; count the calls that finish inside the
    window that opens after `warmup` seconds, with their latencies."""
    start = time.monotonic() + warmup
    end = start + window
    result = LoadResult(0, window)

    async def client(index: int) -> None:
        for _ in range(MAX_CALLS_PER_CLIENT):
            began = time.monotonic()
            if began >= end:
                return
            try:
                await call(index)
            except grpc.aio.AioRpcError as error:
                result.errors += 1
                result.first_error = result.first_error or f"{error.code().name}: {error.details()}"
                continue
            finished = time.monotonic()
            if start <= finished < end:
                result.completed += 1
                result.latencies.append(finished - began)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return result


def channel(port: int) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")
