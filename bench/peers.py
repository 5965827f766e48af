"""Peer queues doing the same no-op job on this machine: procrastinate and
PgQueuer on the same PostgreSQL, Celery on a Redis broker of the run's own.
Each enqueues from this process and works in a worker process of its own."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg

from bench.context import POSTGRESQL, Context
from bench.drive import Drive, drive
from bench.infra import pg_dsn, redis_server
from bench.peer_apps import NOOP, procrastinate_app
from bench.procs import child

CLIENTS = 64
CONCURRENCY = 16
# Celery's client is synchronous: enqueue from this many threads.
CELERY_THREADS = 6
CELERY_PROCESSES = 2
READY_TIMEOUT = 60.0


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@contextlib.asynccontextmanager
async def _pg_connection(url: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(pg_dsn(url), autocommit=True) as conn:
        yield conn


async def _count(conn: psycopg.AsyncConnection, query: str) -> int:
    row = await (await conn.execute(query)).fetchone()
    return int(row[0]) if row else 0


async def procrastinate(ctx: Context, jobs: int, timeout: float) -> Drive:
    async with ctx.database(POSTGRESQL, "procrastinate", migrated=False) as url:
        dsn = pg_dsn(url)
        app = procrastinate_app(dsn, pool_size=CONCURRENCY)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            worker = ["-m", "bench.peer_apps", "procrastinate", dsn, str(CONCURRENCY)]
            async with child(worker, ctx.log("procrastinate")), _pg_connection(url) as conn:
                deferrer = app.configure_task(NOOP)
                query = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
                return await drive(
                    deferrer.defer_async,
                    lambda: _count(conn, query),
                    jobs=jobs,
                    clients=CLIENTS,
                    timeout=timeout,
                )


async def pgqueuer(ctx: Context, jobs: int, timeout: float) -> Drive:
    from pgqueuer import PsycopgDriver, Queries

    async with ctx.database(POSTGRESQL, "pgqueuer", migrated=False) as url:
        dsn = pg_dsn(url)
        connections = [
            await psycopg.AsyncConnection.connect(dsn, autocommit=True) for _ in range(CONCURRENCY)
        ]
        try:
            queries = [Queries(PsycopgDriver(c)) for c in connections]
            await queries[0].install()
            worker = ["-m", "bench.peer_apps", "pgqueuer", dsn, str(CONCURRENCY)]
            turn = iter(range(sys.maxsize))

            async def enqueue() -> object:
                return await queries[next(turn) % len(queries)].enqueue(NOOP, None)

            async with child(worker, ctx.log("pgqueuer")), _pg_connection(url) as conn:
                # A finished job leaves the queue table for the log table.
                query = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"
                return await drive(
                    enqueue,
                    lambda: _count(conn, query),
                    jobs=jobs,
                    clients=CLIENTS,
                    timeout=timeout,
                )
        finally:
            await asyncio.gather(*(c.close() for c in connections))


async def celery(ctx: Context, jobs: int, timeout: float) -> Drive:
    import redis.asyncio as aioredis
    from celery import Celery  # type: ignore[import-untyped]

    from bench.celery_app import DONE, READY

    with redis_server(ctx.work) as url:
        producer = Celery("bench-client", broker=url)
        producer.conf.update(task_ignore_result=True)
        worker = [
            "-m", "celery", "-A", "bench.celery_app:app", "worker",
            "--pool", "prefork", "--concurrency", str(CELERY_PROCESSES),
            "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        counter = aioredis.Redis.from_url(url)
        try:
            async with child(
                worker, ctx.log("celery"), env={"BENCH_REDIS_URL": url}, announces=False
            ):
                await _until(lambda: counter.exists(READY), READY_TIMEOUT)

                async def enqueue() -> object:
                    return await asyncio.to_thread(producer.send_task, NOOP)

                async def done() -> int:
                    return int(await counter.get(DONE) or 0)

                return await drive(
                    enqueue, done, jobs=jobs, clients=CELERY_THREADS, timeout=timeout
                )
        finally:
            await counter.aclose()
            producer.close()


async def _until(check: Callable[[], Awaitable[object]], timeout: float) -> None:
    for _ in range(int(timeout / 0.1)):
        if await check():
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the Celery worker was not ready after {timeout:.0f} s")
