"""The seam where every job ends, on the real SQLite and PostgreSQL: the
worker's finishing write, the cancel of a queued operation and the rescue of
a lost lease all pass through it, and the rescue applies the job type's
retry policy like any failed attempt."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload
from lrod.domain.retry import Backoff, JobPolicy
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.domain.webhooks import DeliveryState
from lrod.metrics import Metrics
from lrod.store.protocol import EndedBy, Transition
from lrod.store.sql_store import SqlStore

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)
BACKOFF = Backoff(timedelta(minutes=1), timedelta(minutes=10))
POLICY = JobPolicy(BACKOFF, timedelta(days=1))


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Transition] = []

    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        self.seen.extend(transitions)


async def _add(store: SqlStore, max_attempts: int, notify_url: str | None = None) -> str:
    job = NewJob(
        notify_url=notify_url,
        id=new_operation_id(),
        owner="o",
        job_type="t",
        input=Payload("x", b""),
        max_attempts=max_attempts,
        create_time=NOW,
        run_after=NOW,
    )
    await store.create(job, "")
    return job.id


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_rescued_job_out_of_attempts_fails_like_any_other(store: SqlStore) -> None:
    recorder, metrics = Recorder(), Metrics()
    store.subscribe(recorder)
    store.subscribe(metrics)
    op_id = await _add(store, max_attempts=1)
    await store.claim("w1", NOW, LEASE, 1, ["t"])
    later = NOW + LEASE + timedelta(seconds=1)
    assert await store.rescue(later, 10, lambda _: POLICY) == 1

    failed = await store.get(op_id, "o", later)
    assert failed.state is State.FAILED
    assert failed.error is not None
    assert failed.error.reason == "ATTEMPTS_EXHAUSTED"
    assert failed.error.metadata["last_reason"] == "LEASE_EXPIRED"
    assert failed.expire_time == later + POLICY.retention
    [moved] = recorder.seen
    assert (moved.source, moved.operation.state, moved.by) == (
        State.RUNNING,
        State.FAILED,
        EndedBy.RESCUE,
    )
    assert moved.worker == "w1"
    assert moved.operation == failed
    labels = {"job_type": "t", "from": "RUNNING", "to": "FAILED"}
    assert _sample(metrics, "lrod_state_transitions_total", **labels) == 1
    duration = "lrod_job_duration_seconds_count"
    assert _sample(metrics, duration, job_type="t", state="FAILED") == 1
    assert _sample(metrics, "lrod_jobs_rescued_total") == 1


async def test_a_rescued_job_out_of_attempts_is_notified_like_any_other(store: SqlStore) -> None:
    op_id = await _add(store, max_attempts=1, notify_url="https://hooks.example.com/x")
    await store.claim("w1", NOW, LEASE, 1, ["t"])
    later = NOW + LEASE + timedelta(seconds=1)
    await store.rescue(later, 10, lambda _: POLICY)
    failed = await store.get(op_id, "o", later)
    assert failed.delivery is not None
    assert (failed.delivery.state, failed.delivery.attempts) == (DeliveryState.PENDING, 0)
    assert failed.delivery.next_attempt_time == later
    assert failed.delivery.webhook_id == f"msg_{op_id}"
    [claim] = await store.claim_deliveries(later, 10, LEASE)
    assert claim.operation.state is State.FAILED
    # Held by that claim: no one else takes it until its lease runs out.
    assert await store.claim_deliveries(later, 10, LEASE) == []
    assert len(await store.claim_deliveries(later + LEASE * 2, 10, LEASE)) == 1


async def test_a_rescued_job_waits_for_its_backoff(store: SqlStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder)
    op_id = await _add(store, max_attempts=3)
    await store.claim("w1", NOW, LEASE, 1, ["t"])
    later = NOW + LEASE + timedelta(seconds=1)
    assert await store.rescue(later, 10, lambda _: POLICY) == 1

    queued = await store.get(op_id, "o", later)
    assert queued.state is State.QUEUED
    assert later + BACKOFF.minimum <= queued.run_after <= later + BACKOFF.ceiling(1)
    [moved] = recorder.seen
    assert moved.retried
    assert moved.by is EndedBy.RESCUE
    assert await store.claim("w2", queued.run_after - timedelta(seconds=1), LEASE, 1, ["t"]) == []
    [again] = await store.claim("w2", queued.run_after, LEASE, 1, ["t"])
    assert again.operation.attempt == 2


async def test_every_write_site_passes_the_seam(store: SqlStore) -> None:
    recorder = Recorder()
    store.subscribe(recorder)
    finished, cancelled = await _add(store, 3), await _add(store, 3)
    [claim] = await store.claim("w1", NOW, LEASE, 1, ["t"])
    assert claim.operation.id == finished
    await store.succeed(claim, NOW, Payload("y", b""), POLICY.retention)
    await store.cancel(cancelled, "o", NOW, lambda _: POLICY.retention)
    seen = [(t.operation.id, t.source, t.operation.state, t.by) for t in recorder.seen]
    assert seen == [
        (finished, State.RUNNING, State.SUCCEEDED, EndedBy.WORKER),
        (cancelled, State.QUEUED, State.CANCELLED, EndedBy.CANCEL),
    ]
    # A stale write moves nothing, and tells no one.
    assert await store.succeed(claim, NOW, Payload("y", b""), POLICY.retention) is None
    assert len(recorder.seen) == 2
