"""The in-process hand-off of a Submit to an idle local worker pool
(WorkerSettings.hand_off): the job is stored already claimed, in the Submit's
own transaction, and starts without a claim; leases, fencing, priorities,
schedule times, cancellation, quotas and idempotency stay as for a claim.
(The kill -9 case is in test_crashes.py, the active-operations quota in
tests/auth/test_quotas.py, the store's part in the contract test.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2

from lrod.app import Service
from lrod.clock import utcnow
from lrod.domain.names import new_operation_id, parse_operation_name
from lrod.domain.operation import Operation, Payload
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.jobs.registry import Registry
from lrod.store.engine import open_database
from lrod.store.sql_store import SqlStore
from lrod.v1 import job_service_pb2
from lrod.worker import WorkerPool, WorkerSettings
from lrod.worker.pool import _wake_up
from tests.execution.support import attempts_of, wait_done
from tests.helpers import metadata, pack, state_name, submit
from tests.jobs import Gates, build_registry


@pytest.fixture
def worker_settings() -> WorkerSettings:
    return WorkerSettings(
        concurrency=2,
        lease=timedelta(seconds=3),
        poll_interval=0.2,
        cancel_grace=0.5,
        drain_grace=2.0,
        hand_off=True,
    )


async def _idle(service: Service) -> None:
    """Until the pool's last claim came back short with nothing announced
    since: it takes hand-offs."""
    assert service.pool is not None
    async with asyncio.timeout(20):
        while not service.pool.idle:
            await asyncio.sleep(0.01)


async def _stored(database_url: str, name: str) -> Operation:
    """The row as another connection reads it (committed)."""
    store = SqlStore(open_database(database_url))
    try:
        return await store.get(parse_operation_name(name), None, utcnow())
    finally:
        await store.close()


REQUEST_ID = "5f0c1c1e-aaaa-4bbb-8ccc-000000000001"


def _gate(key: str) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=key)


async def test_an_idle_pool_takes_a_submit_as_a_claim_would(
    service: Service, jobs, operations, gates: Gates, database_url: str
) -> None:
    await _idle(service)
    op = await submit(jobs, "test.gate", _gate("a"))
    # Acknowledged after its commit: stored claimed, as another connection reads it.
    assert (state_name(op), metadata(op).attempt) == ("RUNNING", 1)
    row = await _stored(database_url, op.name)
    assert service.pool is not None
    assert (row.state, row.attempt) == (State.RUNNING, 1)
    assert row.lease_owner == service.pool.settings.worker_id
    assert [(a.number, a.outcome) for a in await attempts_of(database_url, op.name)] == [
        (1, "RUNNING")
    ]
    # Counted as a claim is.
    moved = service.metrics.registry.get_sample_value(
        "lrod_state_transitions_total", {"job_type": "test.gate", "from": "QUEUED", "to": "RUNNING"}
    )
    assert moved == 1
    started = service.metrics.registry.get_sample_value(
        "lrod_hand_offs_total", {"job_type": "test.gate", "outcome": "started"}
    )
    assert started == 1
    # The pool's heartbeat renews its lease like any claim's.
    async with asyncio.timeout(20):
        while (await _stored(database_url, op.name)).lease_expires_at == row.lease_expires_at:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(gates.started_event("a").wait(), 20)
    gates.gate("a").set()
    done = await wait_done(operations, op.name)
    assert (state_name(done), metadata(done).attempt) == ("SUCCEEDED", 1)
    assert [(a.number, a.outcome) for a in await attempts_of(database_url, op.name)] == [
        (1, "SUCCEEDED")
    ]


async def test_scheduled_jobs_and_a_full_pool_are_queued_and_cancel_at_once(
    service: Service, jobs, operations, gates: Gates
) -> None:
    await _idle(service)
    later = timestamp_pb2.Timestamp()
    later.GetCurrentTime()
    later.seconds += 3600
    scheduled = await submit(jobs, "test.noop", empty_pb2.Empty(), schedule_time=later)
    assert state_name(scheduled) == "QUEUED"
    cancelled = await operations.CancelOperation(
        operations_pb2.CancelOperationRequest(name=scheduled.name)
    )
    assert cancelled is not None
    after = await operations.GetOperation(operations_pb2.GetOperationRequest(name=scheduled.name))
    assert (state_name(after), after.error.code) == ("CANCELLED", 1)
    # Two slots: two hand-offs, then the third Submit is queued.
    await _idle(service)
    first = await submit(jobs, "test.gate", _gate("f1"))
    await _idle(service)
    second = await submit(jobs, "test.gate", _gate("f2"))
    third = await submit(jobs, "test.gate", _gate("f3"))
    assert [state_name(o) for o in (first, second, third)] == ["RUNNING", "RUNNING", "QUEUED"]
    for key in ("f1", "f2", "f3"):
        gates.gate(key).set()
    for op in (first, second, third):
        assert state_name(await wait_done(operations, op.name)) == "SUCCEEDED"


async def test_a_waiting_job_of_higher_priority_is_not_overtaken(
    service: Service, jobs, operations, gates: Gates, database_url: str
) -> None:
    """A higher-priority job stored by another process, not yet claimed:
    whether this pool claims it first or the Submit is queued behind it
    (the store's check), it starts no later than the Submit's job."""
    await _idle(service)
    other = SqlStore(open_database(database_url))
    try:
        now = utcnow()
        waiting = NewJob(
            id=new_operation_id(),
            owner="anonymous",
            job_type="test.noop",
            input=Payload(pack(empty_pb2.Empty()).type_url, b""),
            max_attempts=3,
            create_time=now,
            run_after=now,
            priority=5,
        )
        await other.create(waiting, waiting.fingerprint())
    finally:
        await other.close()
    low = await submit(jobs, "test.noop", empty_pb2.Empty(), priority=1)
    low_done = await wait_done(operations, low.name)
    high_done = await wait_done(operations, f"operations/{waiting.id}")
    assert state_name(high_done) == state_name(low_done) == "SUCCEEDED"
    high_start = metadata(high_done).start_time.ToDatetime()
    assert high_start <= metadata(low_done).start_time.ToDatetime()


async def test_a_repeated_request_id_returns_the_handed_off_operation_and_runs_once(
    service: Service, jobs, operations, gates: Gates, database_url: str
) -> None:
    await _idle(service)
    first = await submit(jobs, "test.gate", _gate("r"), request_id=REQUEST_ID)
    assert state_name(first) == "RUNNING"
    await _idle(service)
    again = await submit(jobs, "test.gate", _gate("r"), request_id=REQUEST_ID)
    assert again.name == first.name
    gates.gate("r").set()
    done = await wait_done(operations, first.name)
    assert (state_name(done), metadata(done).attempt) == ("SUCCEEDED", 1)
    assert len(await attempts_of(database_url, first.name)) == 1


async def test_a_handed_off_job_is_cancelled_as_a_running_one(
    service: Service, jobs, operations, gates: Gates
) -> None:
    await _idle(service)
    op = await submit(jobs, "test.block", _gate("c"))
    assert state_name(op) == "RUNNING"
    await asyncio.wait_for(gates.started_event("c").wait(), 20)
    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
    done = await wait_done(operations, op.name)
    assert (state_name(done), done.error.code) == ("CANCELLED", 1)
    assert gates.saw_cancel == ["c"]


async def test_batch_submit_is_not_handed_off(service: Service, jobs, operations) -> None:
    await _idle(service)
    request = job_service_pb2.SubmitRequest(job_type="test.noop", input=pack(empty_pb2.Empty()))
    answer = await jobs.BatchSubmit(job_service_pb2.BatchSubmitRequest(requests=[request]))
    [op] = answer.operations
    assert state_name(op) == "QUEUED"
    assert state_name(await wait_done(operations, op.name)) == "SUCCEEDED"


async def test_a_type_the_pool_does_not_run_is_never_reserved(service: Service) -> None:
    only_noop = Registry()
    full = build_registry(Gates())
    noop = full.get("test.noop")
    assert noop is not None
    only_noop.register(noop)
    pool = WorkerPool(
        service.store,
        service.hub,
        only_noop,
        WorkerSettings(concurrency=1, poll_interval=0.2, hand_off=True),
    )
    pool.start()
    try:
        async with asyncio.timeout(20):
            while not pool.idle:
                await asyncio.sleep(0.01)
        now = utcnow()
        assert pool.reserve("test.gate", 0, now) is None
        assert pool.reserve("test.noop", 0, now + timedelta(hours=1)) is None  # not due
        held = pool.reserve("test.noop", 0, now)
        assert held is not None
        assert pool.reserve("test.noop", 0, now) is None  # its one slot is held
        held.stored(None)
        assert pool.reserve("test.noop", 0, now) is not None
    finally:
        await pool.stop(0)


async def test_a_hand_off_stored_after_the_drain_gave_up_is_not_started(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    """stop() waits drain_grace + 5 s for Submits being stored claimed; one
    that commits later is not started (it would run undrained, its lease
    unrenewed): its lease expires and the rescue hands it on."""
    registry = build_registry(Gates())
    pool = WorkerPool(
        service.store,
        service.hub,
        registry,
        WorkerSettings(concurrency=1, poll_interval=0.2, drain_grace=0.0, hand_off=True),
    )
    pool.start()
    async with asyncio.timeout(20):
        while not pool.idle:
            await asyncio.sleep(0.01)
    now = utcnow()
    held = pool.reserve("test.noop", 0, now)
    assert held is not None
    await pool.stop()  # gives up on the reservation after 5 s
    job = NewJob(
        id=new_operation_id(),
        owner="anonymous",
        job_type="test.noop",
        input=Payload(pack(empty_pb2.Empty()).type_url, b""),
        max_attempts=3,
        create_time=now,
        run_after=now,
    )
    with caplog.at_level("WARNING", logger="lrod.worker"):
        op, created = await service.store.create_claimed(job, job.fingerprint(), held)
    assert created
    assert op.state is State.RUNNING
    started = list(pool._running)  # an attempt started for it, if any
    await asyncio.gather(*started, return_exceptions=True)
    assert started == []
    assert "stored after the drain" in caplog.text
    row = await service.store.get(job.id, None, utcnow())
    assert (row.state, row.lease_owner) == (State.RUNNING, held.worker_id)


async def test_an_idle_pools_poll_stays_due_when_slots_free_meanwhile(
    service: Service, jobs, operations, gates: Gates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While idle in hand-off mode a freed slot does not claim; the wait it
    ends is taken up again with the poll still due when the last short
    claim's interval ends, not a whole interval after the slot freed (each
    freed slot would otherwise put the poll, which finds jobs whose schedule
    time passed unannounced, later)."""
    assert service.pool is not None
    await service.pool.stop()  # this test's pool is the only one
    settings = WorkerSettings(
        concurrency=2, lease=timedelta(seconds=10), poll_interval=60, hand_off=True
    )
    pool = WorkerPool(service.store, service.hub, service.registry, settings)
    loop = asyncio.get_running_loop()
    due: list[float] = []  # when each of the pool's idle waits ends at the latest
    call_at, call_later = loop.call_at, loop.call_later

    def at(when: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if callback is _wake_up and args[0] is pool._wake:
            due.append(when)
        return call_at(when, callback, *args, **kwargs)

    def later(delay: float, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if callback is _wake_up and args[0] is pool._wake:
            due.append(loop.time() + delay)
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", at)
    monkeypatch.setattr(loop, "call_later", later)
    pool.start()
    try:
        op = await submit(jobs, "test.gate", _gate("x"))
        await asyncio.wait_for(gates.started_event("x").wait(), 10)
        async with asyncio.timeout(10):
            while not pool.idle:
                await asyncio.sleep(0.01)
        until = pool._idle_until
        gates.gate("x").set()  # its slot frees, then its outcome is written
        assert state_name(await wait_done(operations, op.name)) == "SUCCEEDED"
        async with asyncio.timeout(10):
            while pool._running or pool._wake is None:
                await asyncio.sleep(0.01)
        # No claim since (the freed slot's wake-ups found the pool idle),
        # and the poll is still due at the end of that claim's interval.
        assert pool.idle
        assert pool._idle_until == until
        assert due[-1] <= until
    finally:
        await pool.stop(1.0)
