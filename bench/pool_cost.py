"""`python -m bench.pool_cost`: the worker's CPU per job.

Runs lrod's WorkerPool in this process over a backlog of no-op jobs and
reports this process's CPU (time.process_time, which counts the SQLite
threads too, not the PostgreSQL server) per job, from the pool's start until
the last job's finishing write committed. `--db memory` puts an in-memory
store under the pool that answers every call at once: what is left is the
pool, the attempt and the event loop alone. `--db sqlite|postgresql`: a fresh
database with the jobs put in place with SQL (bench.bulk), the store, metrics
and transition log subscribed as `lrod serve` does. `--profile FILE` writes a
cProfile of the measured rounds. A tool for measuring one change; `make
bench` does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bench import bulk
from bench.infra import scratch_database
from bench.jobs import NOOP, registry
from bench.stats import median
from lrod import logs
from lrod.domain.operation import Operation, Payload
from lrod.domain.retry import JobPolicy
from lrod.domain.states import State
from lrod.hub import ChangeHub
from lrod.metrics import Metrics
from lrod.settings import WorkerSettings
from lrod.store.endings import TransitionLog
from lrod.store.engine import open_database
from lrod.store.protocol import Claim, Heartbeat
from lrod.store.sql_store import SqlStore
from lrod.worker import WorkerPool

EMPTY = "type.googleapis.com/google.protobuf.Empty"


class MemoryStore:
    """Just enough of OperationStore for a pool running no-op jobs: every
    call answers at once (after one pass of the loop, as a write would)."""

    claims_in_flight = 2  # as on PostgreSQL: the pool's own cost of it

    def __init__(self, hub: ChangeHub) -> None:
        self._hub = hub
        self._queued: list[Operation] = []
        self.on_done: Callable[[int], None] = lambda _: None

    def load(self, count: int) -> None:
        now = datetime.now(UTC)
        self._queued = [
            Operation(
                id=f"op{i:018d}",
                owner="anonymous",
                job_type=NOOP,
                state=State.QUEUED,
                input=Payload(EMPTY, b""),
                create_time=now,
                update_time=now,
                run_after=now,
            )
            for i in range(count)
        ][::-1]

    async def claim(
        self, worker_id: str, now: datetime, lease: timedelta, limit: int, job_types: Any
    ) -> Sequence[Claim]:
        await asyncio.sleep(0)
        taken = [self._queued.pop() for _ in range(min(limit, len(self._queued)))]
        return [Claim(op, "token") for op in taken]

    async def _finish(self, claim: Claim) -> Operation:
        await asyncio.sleep(0)
        self.on_done(1)
        return claim.operation

    async def succeed(self, claim: Claim, *args: Any, **kwargs: Any) -> Operation:
        return await self._finish(claim)

    async def fail(self, claim: Claim, *args: Any, **kwargs: Any) -> Operation:
        return await self._finish(claim)

    async def cancel_running(self, claim: Claim, *args: Any, **kwargs: Any) -> Operation:
        return await self._finish(claim)

    async def release(self, claim: Claim, now: datetime) -> Operation:
        return claim.operation

    async def heartbeat(self, claim: Claim, *args: Any) -> Heartbeat:
        return Heartbeat(True, False)

    async def renew(self, claims: Sequence[Claim], *args: Any) -> Sequence[Heartbeat]:
        return [Heartbeat(True, False) for _ in claims]

    async def rescue(self, now: datetime, limit: int, policy: Callable[[str], JobPolicy]) -> int:
        return 0


class DoneCounter:
    """A transition subscriber: counts terminal moves, sets `all_done`."""

    def __init__(self) -> None:
        self.done = 0
        self.wanted = 0
        self.all_done = asyncio.Event()

    def add(self, count: int) -> None:
        self.done += count
        if self.done >= self.wanted:
            self.all_done.set()

    def transitions_committed(self, transitions: Sequence[Any]) -> None:
        self.add(sum(1 for t in transitions if t.operation.done))

    def expect(self, count: int) -> None:
        self.done = 0
        self.wanted = count
        self.all_done.clear()


async def _rounds(
    store: Any, hub: ChangeHub, counter: DoneCounter, load: Callable[[int], None], args: Any
) -> list[float]:
    settings = WorkerSettings(
        concurrency=args.concurrency,
        lease=timedelta(seconds=30),
        claim_ahead=args.claim_ahead,
        claim_ahead_wait=args.claim_ahead_seconds,
        claims_in_flight=args.claims_in_flight,
    )
    metrics = Metrics()
    profile = cProfile.Profile() if args.profile else None
    costs: list[float] = []
    for number in range(args.rounds + 1):  # the first warms up
        count = args.count if number else max(200, args.count // 10)
        load(count)
        counter.expect(count)
        pool = WorkerPool(store, hub, registry, settings, metrics=metrics)
        if profile is not None and number:
            profile.enable()
        started, wall = time.process_time(), time.monotonic()
        pool.start()
        await counter.all_done.wait()
        cpu, wall = time.process_time() - started, time.monotonic() - wall
        if profile is not None and number:
            profile.disable()
        await pool.stop(1.0)
        if number:
            costs.append(cpu / count * 1e6)
            print(f"  round {number}: {cpu / count * 1e6:.0f} us/job, {count / wall:.0f} jobs/s")
    if profile is not None:
        profile.dump_stats(args.profile)
    return costs


async def run(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        hub = ChangeHub()
        counter = DoneCounter()
        if args.db == "memory":
            memory = MemoryStore(hub)
            memory.on_done = counter.add
            costs = await _rounds(memory, hub, counter, memory.load, args)
        else:
            url = await scratch_database(stack, args.db, "poolcost")
            store = SqlStore(open_database(url), hub)
            store.subscribe(Metrics())
            store.subscribe(TransitionLog())
            store.subscribe(counter)
            try:
                costs = await _rounds(
                    store, hub, counter, lambda n: bulk.load(url, n, bulk.QUEUED, NOOP), args
                )
            finally:
                await store.close()
    rounds = ", ".join(f"{c:.0f}" for c in costs)
    print(
        f"pool {args.db} x{args.concurrency}: CPU per job {median(costs):.0f} us"
        f" (median of {len(costs)} rounds of {args.count}: {rounds})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pool_cost", description=__doc__)
    parser.add_argument("--db", choices=("memory", "sqlite", "postgresql"), default="memory")
    parser.add_argument("--count", type=int, default=5000, help="jobs per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--claim-ahead", type=int, default=WorkerSettings().claim_ahead)
    parser.add_argument(
        "--claim-ahead-seconds", type=float, default=WorkerSettings().claim_ahead_wait
    )
    parser.add_argument(
        "--claims-in-flight", type=int, help="claims out at once (default: the store's choice)"
    )
    parser.add_argument("--log-level", default="WARNING", help="as the bench server: WARNING")
    parser.add_argument("--profile", help="write a cProfile of the measured rounds here")
    args = parser.parse_args()
    logs.configure(args.log_level, False)
    logging.getLogger("lrod").setLevel(args.log_level)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
