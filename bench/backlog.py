"""Figures 8 and 9: processing rates. Backlog: N no-op jobs already queued
(put in place with SQL; PgQueuer's with its own batch enqueue), then the
workers start; measured from the moment they serve until every job is done
(jobs done before that moment are left out of the count). Bulk: N no-op jobs
submitted through BatchSubmit (1,000 per call, 4 callers) while the workers
run, until all are done, beside PgQueuer's batch enqueue (1,000 per call, 4
callers) and its worker."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable

import psycopg
from google.protobuf import any_pb2, empty_pb2

from bench import bulk as sql_bulk
from bench import peers
from bench.context import DATABASE_NAMES, POSTGRESQL, SQLITE, Context
from bench.drive import poll_after
from bench.infra import pg_dsn
from bench.jobs import NOOP as LROD_NOOP
from bench.load import channel
from bench.peer_apps import NOOP
from bench.procs import child
from bench.results import Figure, not_measured
from bench.stats import ratios
from lrod.v1 import job_service_pb2, job_service_pb2_grpc

PART = "backlog"
BACKLOG = "8. Processing a backlog: N queued no-op jobs, workers started, until all done"
BULK = "9. Bulk: N no-op jobs through BatchSubmit until all done"
WORKERS = peers.CONCURRENCY
BATCH = 1000
CALLERS = 4
DONE_SQL = "SELECT count(*) FROM operations WHERE state = 'SUCCEEDED'"
PGQ_DONE_SQL = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"


def _timeout(jobs: int) -> float:
    return max(60.0, jobs / 100)


async def _sqlite_done(path: str) -> int:
    def count() -> int:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
            return int(conn.execute(DONE_SQL).fetchone()[0])

    return await asyncio.to_thread(count)


def _counter(
    db: str, url: str, conn: psycopg.AsyncConnection | None
) -> Callable[[], Awaitable[int]]:
    if db == SQLITE:
        path = url.removeprefix("sqlite:///")
        return lambda: _sqlite_done(path)
    assert conn is not None

    async def done() -> int:
        row = await (await conn.execute(DONE_SQL)).fetchone()
        return int(row[0]) if row else 0

    return done


async def _until(
    done: Callable[[], Awaitable[int]], jobs: int, began: float, timeout: float, already: int = 0
) -> float:
    while True:
        finished = await done()
        now = time.monotonic()
        if finished >= jobs:
            return now
        if now - began > timeout:
            raise TimeoutError(f"{finished} of {jobs} jobs done after {timeout:.0f} s")
        await asyncio.sleep(poll_after(finished - already, jobs - already, now - began))


@contextlib.asynccontextmanager
async def _pg(url: str):  # type: ignore[no-untyped-def]
    async with await psycopg.AsyncConnection.connect(pg_dsn(url), autocommit=True) as conn:
        yield conn


async def lrod_backlog(ctx: Context, db: str, jobs: int) -> float:
    async with ctx.database(db, "backlog") as url:
        await asyncio.to_thread(sql_bulk.load, url, jobs, sql_bulk.QUEUED, LROD_NOOP)
        async with contextlib.AsyncExitStack() as stack:
            conn = await stack.enter_async_context(_pg(url)) if db == POSTGRESQL else None
            done = _counter(db, url, conn)
            server = await stack.enter_async_context(
                ctx.lrod_server(url, workers=WORKERS, name=f"backlog-{db}")
            )
            await stack.enter_async_context(
                ctx.profiler.record(f"backlog.lrod.{db}", server.pid, ctx.plan.profile_seconds)
            )
            began = time.monotonic()
            already = await done()
            ended = await _until(done, jobs, began, _timeout(jobs), already)
            return (jobs - already) / (ended - began)


async def pgqueuer_backlog(ctx: Context, jobs: int) -> float:
    from pgqueuer import PsycopgDriver, Queries

    async with ctx.database(POSTGRESQL, "pgq_backlog", migrated=False) as url, _pg(url) as conn:
        queries = Queries(PsycopgDriver(conn))
        await queries.install()
        for start in range(0, jobs, BATCH):
            n = min(BATCH, jobs - start)
            await queries.enqueue([NOOP] * n, [None] * n, [0] * n)
        worker = ["-m", "bench.peer_apps", "pgqueuer", pg_dsn(url), str(WORKERS)]

        async def done() -> int:
            row = await (await conn.execute(PGQ_DONE_SQL)).fetchone()
            return int(row[0]) if row else 0

        async with child(worker, ctx.log("pgqueuer-backlog")):
            began = time.monotonic()
            already = await done()
            ended = await _until(done, jobs, began, _timeout(jobs), already)
            return (jobs - already) / (ended - began)


async def _callers(send: Callable[[int], Awaitable[object]], jobs: int) -> None:
    starts = iter(range(0, jobs, BATCH))

    async def caller() -> None:
        for start in starts:
            await send(min(BATCH, jobs - start))

    await asyncio.gather(*(caller() for _ in range(CALLERS)))


async def lrod_bulk(ctx: Context, db: str, jobs: int) -> float:
    packed = any_pb2.Any()
    packed.Pack(empty_pb2.Empty())
    request = job_service_pb2.SubmitRequest(job_type=LROD_NOOP, input=packed)
    async with ctx.database(db, "bulk") as url, contextlib.AsyncExitStack() as stack:
        conn = await stack.enter_async_context(_pg(url)) if db == POSTGRESQL else None
        done = _counter(db, url, conn)
        server = await stack.enter_async_context(
            ctx.lrod_server(url, workers=WORKERS, name=f"bulk-{db}")
        )
        opened = await stack.enter_async_context(channel(server.port))
        await stack.enter_async_context(
            ctx.profiler.record(f"bulk.lrod.{db}", server.pid, ctx.plan.profile_seconds)
        )
        stub = job_service_pb2_grpc.JobServiceStub(opened)  # type: ignore[no-untyped-call]

        async def send(n: int) -> object:
            return await stub.BatchSubmit(
                job_service_pb2.BatchSubmitRequest(requests=[request] * n)
            )

        began = time.monotonic()
        await _callers(send, jobs)
        ended = await _until(done, jobs, began, _timeout(jobs))
        return jobs / (ended - began)


async def pgqueuer_bulk(ctx: Context, jobs: int) -> float:
    from pgqueuer import PsycopgDriver, Queries

    async with ctx.database(POSTGRESQL, "pgq_bulk", migrated=False) as url, _pg(url) as conn:
        connections = [
            await psycopg.AsyncConnection.connect(pg_dsn(url), autocommit=True)
            for _ in range(CALLERS)
        ]
        try:
            queries = [Queries(PsycopgDriver(c)) for c in connections]
            await queries[0].install()
            worker = ["-m", "bench.peer_apps", "pgqueuer", pg_dsn(url), str(WORKERS)]
            turn = iter(range(10**9))

            async def send(n: int) -> object:
                q = queries[next(turn) % len(queries)]
                return await q.enqueue([NOOP] * n, [None] * n, [0] * n)

            async def done() -> int:
                row = await (await conn.execute(PGQ_DONE_SQL)).fetchone()
                return int(row[0]) if row else 0

            async with child(worker, ctx.log("pgqueuer-bulk")):
                began = time.monotonic()
                await _callers(send, jobs)
                ended = await _until(done, jobs, began, _timeout(jobs))
                return jobs / (ended - began)
        finally:
            await asyncio.gather(*(c.close() for c in connections))


async def measure(ctx: Context) -> list[Figure]:
    figures: list[Figure] = []
    for group, kind, jobs, lrod_run, peer_run in (
        (BACKLOG, "backlog", ctx.plan.backlog_jobs, lrod_backlog, pgqueuer_backlog),
        (BULK, "bulk", ctx.plan.bulk_jobs, lrod_bulk, pgqueuer_bulk),
    ):
        peer: list[float] = []
        peer_key = f"{kind}.pgqueuer"
        lrod: dict[str, list[float]] = {db: [] for db in ctx.databases}
        failed: dict[str, str] = {}
        for round_n in range(ctx.plan.processing_rounds):
            # PgQueuer first in even rounds and last in odd ones, so that a
            # drift in the machine's load does not favour either side.
            sides = [peer_key, *ctx.databases]
            for side in sides if round_n % 2 == 0 else reversed(sides):
                if side == peer_key:
                    if ctx.cluster is None:
                        continue
                    try:
                        peer.append(await peer_run(ctx, jobs))
                    except (OSError, RuntimeError, TimeoutError, ImportError) as error:
                        failed[side] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
                    continue
                try:
                    lrod[side].append(await lrod_run(ctx, side, jobs))
                except (OSError, RuntimeError, TimeoutError) as error:
                    failed[side] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
        how = f"; BatchSubmit, {BATCH} per call, {CALLERS} callers" if kind == "bulk" else ""
        label = f"PgQueuer on the same PostgreSQL, {jobs} jobs"
        if peer:
            note = f"worker batch {WORKERS}; pgqueuer {peers.version('pgqueuer')}"
            figures.append(Figure(peer_key, group, label, "jobs/s", peer, part=PART, note=note))
        else:
            why = failed.get(peer_key) or ctx.no_postgres or "PostgreSQL is not available"
            figures.append(not_measured(peer_key, group, label, "jobs/s", PART, why))
        for db, rates in lrod.items():
            key = f"{kind}.lrod.{db}"
            label = f"lrod, {DATABASE_NAMES[db]} (API + workers in one process), {jobs} jobs"
            if db in failed and not rates:
                figures.append(not_measured(key, group, label, "jobs/s", PART, failed[db]))
                continue
            figures.append(
                Figure(
                    key, group, label, "jobs/s", rates,
                    peer_key if peer else None, ratios(rates, peer) if peer else [], PART,
                    note=f"{WORKERS} embedded workers{how}",
                )
            )  # fmt: skip
    return figures
