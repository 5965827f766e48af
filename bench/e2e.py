"""Figure 4: end-to-end throughput of N no-op jobs, submitted over gRPC by 64
clients until every one is done, beside the peers' enqueue-and-process of the
same no-op. Each system gets a fresh database and its worker(s) started and
ready before the clock starts."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable

import psycopg

from bench import peers
from bench.client import Lrod, submit_request
from bench.context import POSTGRESQL, SQLITE, Context
from bench.drive import Drive, drive
from bench.infra import pg_dsn
from bench.load import channel
from bench.results import Figure, not_measured
from bench.stats import median, ratios

PART = "e2e"
GROUP = "4. End-to-end: N no-op jobs submitted until all done"
CLIENTS = peers.CLIENTS
WORKERS = peers.CONCURRENCY
DONE_SQL = "SELECT count(*) FROM operations WHERE state = 'SUCCEEDED'"

Runner = Callable[[Context, int, float], Awaitable[Drive]]

SYSTEMS: dict[str, tuple[str, str]] = {
    f"lrod.{SQLITE}": ("lrod, SQLite (API + workers in one process)", "lrod"),
    f"lrod.{POSTGRESQL}": ("lrod, PostgreSQL (API + workers in one process)", "lrod"),
    "procrastinate": ("procrastinate on the same PostgreSQL", "procrastinate"),
    "pgqueuer": ("PgQueuer on the same PostgreSQL", "pgqueuer"),
    "celery": ("Celery, Redis broker", "celery"),
}
NOTES = {
    "lrod": f"{CLIENTS} gRPC clients; {WORKERS} embedded workers",
    "procrastinate": f"defer_async from {CLIENTS} clients; worker concurrency {WORKERS}",
    "pgqueuer": f"enqueue from {CLIENTS} clients; worker batch {WORKERS}",
    "celery": (
        f"send_task from {peers.CELERY_THREADS} threads; prefork worker, "
        f"{peers.CELERY_PROCESSES} processes; Redis without fsync (not durable per job)"
    ),
}


def _timeout(jobs: int) -> float:
    return max(60.0, jobs / 50)


async def _sqlite_done(path: str) -> int:
    def count() -> int:
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
            return int(conn.execute(DONE_SQL).fetchone()[0])

    return await asyncio.to_thread(count)


async def lrod(ctx: Context, db: str, jobs: int, timeout: float) -> Drive:
    async with (
        ctx.database(db, "e2e") as url,
        ctx.lrod_server(url, workers=WORKERS, name=f"e2e-{db}") as server,
        channel(server.port) as opened,
        ctx.profiler.record(f"e2e.lrod.{db}", server.pid, ctx.plan.profile_seconds * 2),
    ):
        client = Lrod(opened)
        request = submit_request()

        async def enqueue() -> object:
            return await client.jobs.Submit(request)

        if db == SQLITE:
            path = url.removeprefix("sqlite:///")
            return await drive(
                enqueue, lambda: _sqlite_done(path), jobs=jobs, clients=CLIENTS, timeout=timeout
            )
        async with await psycopg.AsyncConnection.connect(pg_dsn(url), autocommit=True) as conn:

            async def done() -> int:
                row = await (await conn.execute(DONE_SQL)).fetchone()
                return int(row[0]) if row else 0

            return await drive(enqueue, done, jobs=jobs, clients=CLIENTS, timeout=timeout)


def _runners(ctx: Context) -> dict[str, Runner]:
    runners: dict[str, Runner] = {
        f"lrod.{db}": lambda c, n, t, db=db: lrod(c, db, n, t)  # type: ignore[misc]
        for db in ctx.databases
    }
    if ctx.cluster is not None:
        runners["procrastinate"] = peers.procrastinate
        runners["pgqueuer"] = peers.pgqueuer
    runners["celery"] = peers.celery
    return runners


async def measure(ctx: Context) -> list[Figure]:
    jobs = ctx.plan.e2e_jobs
    runners = _runners(ctx)
    found: dict[str, list[Drive]] = {key: [] for key in runners}
    failed: dict[str, str] = {}
    for _ in range(ctx.plan.e2e_rounds):
        for key, runner in runners.items():
            if key in failed:
                continue
            try:
                found[key].append(await runner(ctx, jobs, _timeout(jobs)))
            except (OSError, RuntimeError, TimeoutError, ImportError) as error:
                failed[key] = f"{type(error).__name__}: {error}".splitlines()[0][:200]
    return _figures(ctx, jobs, found, failed)


def _note(system: str) -> str:
    return NOTES[system] + ("" if system == "lrod" else f"; {system} {peers.version(system)}")


def _figures(
    ctx: Context, jobs: int, found: dict[str, list[Drive]], failed: dict[str, str]
) -> list[Figure]:
    rates = {key: [d.rate for d in drives] for key, drives in found.items() if key not in failed}
    peer_keys = [k for k in rates if not k.startswith("lrod.")]
    best_peer = max(peer_keys, key=lambda k: median(rates[k]), default=None)
    figures: list[Figure] = []
    for key, (label, system) in SYSTEMS.items():
        figure_key = f"e2e.{key}"
        if key not in found and key not in failed:
            why = ctx.no_postgres or "PostgreSQL is not available"
            figures.append(not_measured(figure_key, GROUP, label, "jobs/s", PART, why))
            continue
        if key in failed:
            figures.append(not_measured(figure_key, GROUP, label, "jobs/s", PART, failed[key]))
            continue
        drives = found[key]
        baseline = None
        round_ratios: list[float] = []
        if key.startswith("lrod.") and best_peer is not None:
            baseline = f"e2e.{best_peer}"
            round_ratios = ratios(rates[key], rates[best_peer])
        figures.append(
            Figure(
                figure_key, GROUP, f"{label}, {jobs} jobs", "jobs/s", rates[key], baseline,
                round_ratios, PART, note=_note(system),
                detail={
                    "seconds_rounds": [d.seconds for d in drives],
                    "enqueue_seconds_rounds": [d.enqueue_seconds for d in drives],
                    "jobs": jobs,
                },
            )
        )  # fmt: skip
    return figures
