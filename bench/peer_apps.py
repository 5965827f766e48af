"""The PostgreSQL peers' side of the same no-op job, and their workers as
processes: `python -m bench.peer_apps procrastinate|pgqueuer DSN CONCURRENCY`
(Celery's is in bench.celery_app)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

NOOP = "noop"


# -- procrastinate -------------------------------------------------------
def procrastinate_app(dsn: str, pool_size: int) -> Any:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=pool_size)
    )

    @app.task(name=NOOP)
    async def noop() -> None:
        return None

    return app


async def run_procrastinate(dsn: str, concurrency: int) -> None:
    from bench.procs import announce

    app = procrastinate_app(dsn, pool_size=concurrency + 2)
    async with app.open_async():
        announce()
        await app.run_worker_async(concurrency=concurrency, wait=True)


# -- PgQueuer ------------------------------------------------------------
async def run_pgqueuer(dsn: str, concurrency: int) -> None:
    import psycopg
    from pgqueuer import PsycopgDriver, Queries, QueueManager
    from pgqueuer.models import Job

    from bench.procs import announce

    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    manager = QueueManager(Queries(PsycopgDriver(conn)))

    @manager.entrypoint(NOOP)
    async def noop(job: Job) -> None:
        return None

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, manager.shutdown.set)
    announce()
    try:
        await manager.run(batch_size=concurrency)
    finally:
        await conn.close()


def main(argv: list[str]) -> None:
    kind, dsn, concurrency = argv[0], argv[1], int(argv[2])
    runner = {"procrastinate": run_procrastinate, "pgqueuer": run_pgqueuer}[kind]
    asyncio.run(runner(dsn, concurrency))


if __name__ == "__main__":
    main(sys.argv[1:])
