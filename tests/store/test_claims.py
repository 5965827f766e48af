"""The store's claim contract on the real SQLite and PostgreSQL: only the
types a worker knows, highest priority first, never before run_after, and a
stale claim's writes are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.retry import Backoff, JobPolicy
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store.sql_store import SqlStore

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)


async def _add(
    store: SqlStore, job_type: str, *, priority: int = 0, run_after: datetime = NOW
) -> str:
    job = NewJob(
        id=new_operation_id(),
        owner="o",
        job_type=job_type,
        input=Payload("x", b""),
        max_attempts=3,
        create_time=NOW,
        run_after=run_after,
        priority=priority,
    )
    await store.create(job, "")
    return job.id


async def test_a_worker_claims_only_the_types_it_knows(store: SqlStore) -> None:
    known = await _add(store, "known")
    unknown = await _add(store, "new.type")
    claims = await store.claim("w", NOW, LEASE, 10, ["known"])
    assert [c.operation.id for c in claims] == [known]
    assert (await store.get(unknown, "o", NOW)).state is State.QUEUED


async def test_priority_first_and_never_before_run_after(store: SqlStore) -> None:
    low = await _add(store, "t", priority=-5)
    high = await _add(store, "t", priority=50)
    later = await _add(store, "t", priority=100, run_after=NOW + timedelta(minutes=5))
    first = await store.claim("w", NOW, LEASE, 1, ["t"])
    second = await store.claim("w", NOW, LEASE, 10, ["t"])
    assert [c.operation.id for c in first] == [high]
    assert [c.operation.id for c in second] == [low]
    due = await store.claim("w", NOW + timedelta(minutes=5), LEASE, 10, ["t"])
    assert [c.operation.id for c in due] == [later]


async def test_a_rescued_claim_cannot_write(store: SqlStore) -> None:
    op_id = await _add(store, "t")
    [stale] = await store.claim("w1", NOW, LEASE, 1, ["t"])
    after_lease = NOW + LEASE + timedelta(seconds=1)
    at_once = JobPolicy(Backoff(timedelta(0), timedelta(0)), timedelta(days=1))
    assert await store.rescue(after_lease, 10, lambda _: at_once) == 1
    [fresh] = await store.claim("w2", after_lease, LEASE, 1, ["t"])
    assert fresh.operation.attempt == 2
    assert await store.succeed(stale, after_lease, Payload("y", b"late"), timedelta(days=1)) is None
    assert not (await store.heartbeat(stale, after_lease, LEASE, None)).held
    done = await store.succeed(fresh, after_lease, Payload("y", b"ok"), timedelta(days=1))
    assert done is not None
    assert done.result == Payload("y", b"ok")
    outcomes = [(a.number, a.outcome) for a in await store.attempts(op_id)]
    assert outcomes == [(1, "LEASE_EXPIRED"), (2, "SUCCEEDED")]


async def test_one_renewal_for_many_leases_each_fenced(store: SqlStore) -> None:
    ids = [await _add(store, "t") for _ in range(3)]
    claims = list(await store.claim("w1", NOW, LEASE, 10, ["t"]))
    assert sorted(c.operation.id for c in claims) == sorted(ids)
    first, second, _third = claims
    await store.succeed(first, NOW, Payload("y", b""), timedelta(days=1))
    await store.cancel(second.operation.id, "o", NOW, lambda _: timedelta(days=1))
    later = NOW + timedelta(seconds=20)
    beats = await store.renew(claims, later, LEASE)
    assert [(b.held, b.cancel_requested) for b in beats] == [
        (False, False),  # finished: no longer held
        (True, True),  # the cancel request travels with the renewal
        (True, False),
    ]
    # Renewed: not rescued at the first lease's end, rescued after the new one.
    at_once = JobPolicy(Backoff(timedelta(0), timedelta(0)), timedelta(days=1))
    assert await store.rescue(NOW + LEASE + timedelta(seconds=1), 10, lambda _: at_once) == 0
    assert await store.rescue(later + LEASE + timedelta(seconds=1), 10, lambda _: at_once) == 2
    assert not any(b.held for b in await store.renew(claims, later, LEASE))


async def test_a_claim_takes_at_most_its_limit(store: SqlStore) -> None:
    for _ in range(5):
        await _add(store, "t")
    taken = [len(await store.claim("w", NOW, LEASE, n, ["t"])) for n in (1, 2, 10)]
    assert taken == [1, 2, 2]
