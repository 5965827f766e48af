"""`python -m bench.finish_latency`: handler return -> finishing commit, in one process.

The worker's part of figure 3 (completion to client), measured in this
process on a fresh SQLite file or PostgreSQL database: the API's Submit
(called straight through the servicer, without gRPC) and a WorkerPool of 8
slots, 4 `bench.stamp` jobs in flight (each sleeps 20-50 ms and returns the
moment it returns); for each job, the time from that moment to the commit of
its finishing write (told to a transition subscriber after the commit), and
whether a claim transaction began in between (a claim the freed slot set
off, or a Submit's work wake-up, taking the writer first). A tool for
measuring one change; `make bench` does not run it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from google.longrunning import operations_pb2
from google.protobuf import wrappers_pb2

from bench.client import submit_request
from bench.infra import scratch_database
from bench.jobs import STAMP, registry
from bench.stats import percentile
from lrod import logs
from lrod.api.job_service import JobService
from lrod.hub import ChangeHub
from lrod.manager import OperationManager
from lrod.metrics import Metrics
from lrod.settings import WorkerSettings
from lrod.store.endings import TransitionLog
from lrod.store.engine import open_database
from lrod.store.sql_store import SqlStore
from lrod.worker import WorkerPool

IN_FLIGHT = 4
SLOTS = 8
DELAY = (0.02, 0.05)


class Commits:
    """Transition subscriber: the moment each operation's end committed."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.stamps: dict[str, float] = {}
        self.waiting: dict[str, asyncio.Event] = {}

    def transitions_committed(self, transitions: Sequence[Any]) -> None:
        now = time.monotonic()
        for t in transitions:
            op = t.operation
            if not op.done:
                continue
            self.at[op.id] = now
            if op.result is not None:
                self.stamps[op.id] = wrappers_pb2.DoubleValue.FromString(op.result.value).value
            event = self.waiting.get(op.id)
            if event is not None:
                event.set()


class ClaimTimes:
    """Wraps a store: notes when each claim call begins."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.began: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(self, *args: Any, **kwargs: Any) -> Any:
        self.began.append(time.monotonic())
        return await self._store.claim(*args, **kwargs)


async def _measure(url: str, samples: int) -> tuple[list[float], int]:
    hub = ChangeHub()
    store = SqlStore(open_database(url), hub)
    commits = Commits()
    store.subscribe(Metrics())
    store.subscribe(TransitionLog())
    store.subscribe(commits)
    claims = ClaimTimes(store)
    service = JobService(OperationManager(store, hub, registry))
    settings = WorkerSettings(concurrency=SLOTS, lease=timedelta(seconds=30))
    pool = WorkerPool(claims, hub, registry, settings)  # type: ignore[arg-type]
    pool.start()
    left = samples + 20  # the first 20 warm up
    ids: list[str] = []

    async def client() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            delay = wrappers_pb2.DoubleValue(value=random.uniform(*DELAY))
            answer = await service.Submit(submit_request(STAMP, delay), None)  # type: ignore[arg-type]
            # A new operation is answered serialized (api/wire.py).
            if isinstance(answer, bytes):
                answer = operations_pb2.Operation.FromString(answer)
            op_id = answer.name.removeprefix("operations/")
            event = commits.waiting.setdefault(op_id, asyncio.Event())
            if op_id not in commits.at:
                await event.wait()
            ids.append(op_id)

    try:
        await asyncio.gather(*(client() for _ in range(IN_FLIGHT)))
    finally:
        await pool.stop(1.0)
        await store.close()
    measured = ids[20:]
    latencies = [(commits.at[i] - commits.stamps[i]) * 1000 for i in measured]
    overtaken = sum(
        1
        for i in measured
        if any(commits.stamps[i] < began < commits.at[i] for began in claims.began)
    )
    return latencies, overtaken


async def run(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        url = await scratch_database(stack, args.db, "finishlat")
        latencies, overtaken = await _measure(url, args.samples)
    p50, p90, p99 = (percentile(latencies, q) for q in (50, 90, 99))
    print(
        f"finish {args.db}: handler return -> commit p50 {p50:.1f} / p90 {p90:.1f} /"
        f" p99 {p99:.1f} ms over {len(latencies)} jobs; a claim began in between for"
        f" {overtaken}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.finish_latency", description=__doc__)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--samples", type=int, default=400)
    logs.configure("WARNING", False)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
