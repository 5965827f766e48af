"""Worker presence through a real Service on the real databases: a process
with workers announces itself, keeps its row fresh, removes rows whose
heartbeat stopped, and removes its own when it stops."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from lrod.app import Service, Settings
from lrod.clock import utcnow
from lrod.store.engine import open_database
from lrod.store.protocol import WorkerRecord
from lrod.store.sql_store import SqlStore
from lrod.worker import WorkerSettings
from lrod.worker.presence import PresenceSettings
from tests.jobs import Gates, build_registry


async def test_a_worker_process_announces_itself_and_leaves(
    database_url: str,
) -> None:
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=WorkerSettings(concurrency=3, poll_interval=0.2, worker_id="host:1:abc"),
        presence=PresenceSettings(interval=0.05, stale_after=5.0),
    )
    service = Service(settings, build_registry(Gates()))
    await service.start()
    try:
        [me] = await service.store.workers()
        assert (me.id, me.slots, me.running) == ("host:1:abc", 3, 0)
        assert "examples.sleep" in me.job_types
        first_beat = me.heartbeat
        long_gone = utcnow() - timedelta(minutes=10)
        await service.store.announce_worker(
            WorkerRecord("dead:2:def", "dead", 2, 1, 1, (), long_gone, long_gone)
        )
        async with asyncio.timeout(10):
            while True:
                workers = await service.store.workers()
                if [w.id for w in workers] == ["host:1:abc"] and workers[0].heartbeat > first_beat:
                    break
                await asyncio.sleep(0.05)
    finally:
        await service.stop(1.0)
    assert await workers_in(database_url) == []


async def workers_in(database_url: str) -> list[str]:
    store = SqlStore(open_database(database_url))
    try:
        return [w.id for w in await store.workers()]
    finally:
        await store.close()


async def test_an_api_only_process_announces_no_worker(database_url: str) -> None:
    settings = Settings(address="127.0.0.1:0", database_url=database_url, workers=None)
    service = Service(settings, build_registry(Gates()))
    await service.start()
    try:
        assert service.presence is None
        assert await service.store.workers() == []
    finally:
        await service.stop(1.0)
