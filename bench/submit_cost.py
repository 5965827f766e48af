"""`python -m bench.submit_cost`: CPU per Submit and per BatchSubmit member.

Runs lrod's JobService in this process on a fresh SQLite file or PostgreSQL
database and calls its Submit (64 at once, group commit as in the server)
and BatchSubmit (1,000 per call, 4 at once) straight through the servicer,
without gRPC: what this process's CPU (time.process_time, which counts the
SQLite threads too, not the PostgreSQL server) spends per created
operation in validation, quotas, the store's create and the answer's
conversion and serialization; and the wall time per created operation.
`--request-id` gives each Submit (each BatchSubmit: the batch) a fresh
request_id, as an idempotent client sends. `--profile FILE` writes a cProfile
of the measured calls.
A tool for measuring one change; `make bench` does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import time
import uuid
from typing import Any

from bench.client import submit_request
from bench.infra import scratch_database
from bench.jobs import registry
from bench.stats import median
from lrod.api.job_service import JobService
from lrod.hub import ChangeHub
from lrod.manager import OperationManager
from lrod.store.engine import open_database
from lrod.store.sql_store import SqlStore
from lrod.v1 import job_service_pb2


def _serialized(answer: Any) -> bytes:
    """The answer as the server's response serializer sends it (a servicer
    may answer bytes already serialized: api/calls.py)."""
    return answer if isinstance(answer, bytes) else answer.SerializeToString()


async def _measure(
    service: JobService, args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """Microseconds of CPU and of wall time per created operation, one
    figure per round each."""
    single = submit_request()
    batch = job_service_pb2.BatchSubmitRequest(requests=[single] * 1000)
    context: Any = None

    def one() -> job_service_pb2.SubmitRequest:
        if not args.request_id:
            return single
        request = job_service_pb2.SubmitRequest()
        request.CopyFrom(single)
        request.request_id = str(uuid.uuid4())
        return request

    def many() -> job_service_pb2.BatchSubmitRequest:
        if not args.request_id:
            return batch
        return job_service_pb2.BatchSubmitRequest(
            requests=batch.requests, request_id=str(uuid.uuid4())
        )

    async def submits(count: int) -> None:
        left = count

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                _serialized(await service.Submit(one(), context))

        await asyncio.gather(*(client() for _ in range(64)))

    async def batches(count: int) -> None:
        left = count

        async def client() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                _serialized(await service.BatchSubmit(many(), context))

        await asyncio.gather(*(client() for _ in range(4)))

    run, unit = (submits, 1) if args.call == "submit" else (batches, 1000)
    await run(max(1, 200 // unit))  # warm up: statement caches, connections
    profile = cProfile.Profile() if args.profile else None
    costs = []
    walls = []
    for _ in range(args.rounds):
        if profile is not None:
            profile.enable()
        started, began = time.process_time(), time.perf_counter()
        await run(args.count // unit)
        costs.append((time.process_time() - started) / args.count * 1e6)
        walls.append((time.perf_counter() - began) / args.count * 1e6)
        if profile is not None:
            profile.disable()
    if profile is not None:
        profile.dump_stats(args.profile)
    return costs, walls


async def run(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await scratch_database(stack, args.db, "cost")
        hub = ChangeHub()
        store = SqlStore(open_database(url), hub)
        try:
            service = JobService(OperationManager(store, hub, registry))
            costs, walls = await _measure(service, args)
        finally:
            await store.close()
    rounds = ", ".join(f"{c:.1f}" for c in costs)
    kind = " with request_id" if args.request_id else ""
    print(
        f"{args.call}{kind} {args.db}: CPU per operation {median(costs):.1f} us"
        f" (median of {len(costs)} rounds of {args.count}: {rounds});"
        f" wall {median(walls):.1f} us"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.submit_cost", description=__doc__)
    parser.add_argument("--call", choices=("submit", "batch"), default="submit")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--count", type=int, default=4000, help="operations per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--request-id", action="store_true", help="a fresh request_id per call")
    parser.add_argument("--profile", help="write a cProfile of the measured rounds here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
