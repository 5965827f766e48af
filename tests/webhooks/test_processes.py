"""The outbox across process deaths and between processes: a worker killed
right after the terminal commit (before the POST) loses no webhook; two
worker processes on PostgreSQL never send one delivery at the same time."""

from __future__ import annotations

import signal

import pytest

from lrod.settings import WorkerSettings
from tests.execution.support import start_worker, stop
from tests.webhooks.receiver import SECRETS
from tests.webhooks.support import Delivery, hooked, shorter

pytestmark = pytest.mark.slow

WEBHOOK_FLAGS = (
    "--webhook-secrets",
    SECRETS,
    "--webhook-schemes",
    "https,http",
    "--webhook-allow",
    "127.0.0.1",
    "--webhook-poll-seconds",
    "0.1",
)
# The API only, in this process: the jobs and webhooks run in subprocesses.
API_ONLY = shorter()


async def test_killed_right_after_the_terminal_commit_it_is_delivered_after_restart(
    database_url, receiver, tmp_path
) -> None:
    async with hooked(database_url, API_ONLY, workers=WorkerSettings(concurrency=0)) as h:
        doomed = await start_worker(
            database_url,
            tmp_path / "doomed.log",
            "--jobs",
            "tests.webhooks.crashing:registry",
            *WEBHOOK_FLAGS,
        )
        restarted = None
        try:
            op = await h.submit(receiver.url("/ok"))
            assert await doomed.wait() == -signal.SIGKILL
            done = await h.get(op.name)
            pending = await h.delivery(op.name)
            assert receiver.received == []  # no POST was made
            restarted = await start_worker(database_url, tmp_path / "restarted.log", *WEBHOOK_FLAGS)
            end = await h.ended(op.name, seconds=30)
        finally:
            await stop(doomed)
            if restarted is not None:
                await stop(restarted)
    assert done.done
    assert (pending.state, pending.attempts) == (Delivery.STATE_PENDING, 0)
    assert end.state == Delivery.STATE_DELIVERED
    [got] = receiver.of(end.webhook_id)
    assert got.payload["name"] == op.name


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_worker_processes_never_send_one_delivery_at_once(
    database_url, receiver, tmp_path
) -> None:
    receiver.hold = 0.3  # every call takes a while, so overlaps would show
    workers = []
    async with hooked(database_url, API_ONLY, workers=WorkerSettings(concurrency=0)) as h:
        try:
            for n in range(2):
                workers.append(
                    await start_worker(database_url, tmp_path / f"w{n}.log", *WEBHOOK_FLAGS)
                )
            # Each delivery fails once (503) and then succeeds: two attempts.
            ops = [await h.submit(receiver.url("/flaky/1")) for _ in range(12)]
            ends = [await h.ended(op.name, seconds=60) for op in ops]
        finally:
            for worker in workers:
                await stop(worker)
    assert all(end.state == Delivery.STATE_DELIVERED for end in ends)
    assert receiver.most_concurrent == 1
    assert sorted(receiver.calls.values()) == [2] * 12
