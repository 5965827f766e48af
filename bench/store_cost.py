"""`python -m bench.store_cost`: the store's CPU per job on the worker side.

Stores `--jobs` no-op jobs (BatchSubmit's create_all, not measured), then
claims them `--claim` at a time and finishes each claim's jobs at once
(`succeed`, concurrently, so that they share the group commit as a pool's
do), until none is left (`--mode pool`: as a pool does it: a claim for the free
slots whenever a slot frees, a slot freed when its job's finish is asked
for, so that claims and finishes overlap): what this process's CPU (time.process_time, which
counts the SQLite threads too, not the PostgreSQL server) spends per job in
the store's claim and finishing writes. No pool, no handlers: the store
alone. `--profile FILE` writes a cProfile of the measured rounds.
A tool for measuring one change; `make bench` does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import time
from datetime import UTC, datetime, timedelta

from bench.infra import scratch_database
from bench.stats import median
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.submission import NewJob
from lrod.store.engine import open_database
from lrod.store.protocol import Claim
from lrod.store.sql_store import SqlStore

LEASE = timedelta(seconds=30)
RETENTION = timedelta(days=1)
RESULT = Payload("type.googleapis.com/google.protobuf.Empty", b"")


def _jobs(count: int, now: datetime) -> list[tuple[NewJob, str]]:
    jobs = []
    for _ in range(count):
        job = NewJob(
            id=new_operation_id(),
            owner="bench",
            job_type="noop",
            input=Payload("type.googleapis.com/google.protobuf.Empty", b""),
            max_attempts=3,
            create_time=now,
            run_after=now,
        )
        jobs.append((job, job.fingerprint()))
    return jobs


async def _as_a_pool(store: SqlStore, slots: int) -> int:
    """Jobs done by a claim loop over `slots` slots, until a claim with
    every slot free finds nothing."""
    free = slots
    freed = asyncio.Event()
    done = 0
    running: set[asyncio.Task[None]] = set()

    async def finish(claim: Claim) -> None:
        nonlocal free, done
        finishing = store.succeed(claim, datetime.now(UTC), RESULT, RETENTION)
        free += 1  # the slot frees when the handler returns, before the commit
        freed.set()
        if await finishing is not None:
            done += 1

    while True:
        if free == 0:
            freed.clear()
            await freed.wait()
            continue
        claims = await store.claim("w1", datetime.now(UTC), LEASE, free, ["noop"])
        for claim in claims:
            free -= 1
            task = asyncio.create_task(finish(claim))
            running.add(task)
            task.add_done_callback(running.discard)
        if not claims:
            if not running:
                return done
            await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)


async def _round(store: SqlStore, args: argparse.Namespace) -> tuple[float, float, float]:
    """Microseconds of CPU per job for one backlog of `args.jobs`: the
    process's, and the event loop's thread's alone; and jobs per second
    (wall clock: swings with the machine's load)."""
    now = datetime.now(UTC)
    jobs = _jobs(args.jobs, now)
    for start in range(0, len(jobs), 1000):
        await store.create_all(jobs[start : start + 1000])
    done = 0
    started, started_loop, began = time.process_time(), time.thread_time(), time.perf_counter()
    if args.mode == "pool":
        done = await _as_a_pool(store, args.claim)
    while args.mode == "rounds":
        at = datetime.now(UTC)
        claims = await store.claim("w1", at, LEASE, args.claim, ["noop"])
        if not claims:
            break
        finished = await asyncio.gather(*(store.succeed(c, at, RESULT, RETENTION) for c in claims))
        done += sum(1 for f in finished if f is not None)
    spent, spent_loop = time.process_time() - started, time.thread_time() - started_loop
    rate = done / (time.perf_counter() - began)
    if done != args.jobs:
        raise SystemExit(f"finished {done} of {args.jobs}")
    return spent / done * 1e6, spent_loop / done * 1e6, rate


async def run(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await scratch_database(stack, args.db, "storecost")
        store = SqlStore(open_database(url))
        profile = cProfile.Profile() if args.profile else None
        costs: list[float] = []
        loop_costs: list[float] = []
        rates: list[float] = []
        try:
            for number in range(args.rounds + 1):
                if profile is not None and number:
                    profile.enable()
                cost, loop_cost, rate = await _round(store, args)
                if profile is not None:
                    profile.disable()
                if number:  # the first round warms caches and connections
                    costs.append(cost)
                    loop_costs.append(loop_cost)
                    rates.append(rate)
        finally:
            await store.close()
        if profile is not None:
            profile.dump_stats(args.profile)
    rounds = ", ".join(f"{c:.0f}" for c in costs)
    print(
        f"{args.mode}: claim {args.claim} + finish {args.db}: CPU per job {median(costs):.0f} us"
        f" (median of {len(costs)} rounds of {args.jobs}: {rounds});"
        f" the event loop's thread {median(loop_costs):.0f} us; {median(rates):.0f} jobs/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per round")
    parser.add_argument("--claim", type=int, default=16, help="jobs per claim (pool: slots)")
    parser.add_argument("--mode", choices=("rounds", "pool"), default="rounds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="write a cProfile of the measured rounds here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
