"""The store's console reads and worker presence on the real SQLite and
PostgreSQL: the overview's counts per job type and state in a window, the
oldest due queued job, owner scoping; workers announced, heartbeated, removed
and cleaned up when stale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lrod.domain.errors import Code
from lrod.domain.filters import Filter
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Payload, PublicError
from lrod.domain.paging import Cursor
from lrod.domain.submission import NewJob
from lrod.store.protocol import JobTypeOverview, WorkerRecord
from lrod.store.sql_store import SqlStore

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)
KEEP = timedelta(days=1)


async def _add(store: SqlStore, job_type: str, owner: str = "o", run_after: datetime = NOW) -> str:
    job = NewJob(
        id=new_operation_id(),
        owner=owner,
        job_type=job_type,
        input=Payload("x", b""),
        max_attempts=1,
        create_time=run_after,
        run_after=run_after,
    )
    await store.create(job, "")
    return job.id


async def _finish(store: SqlStore, job_type: str, at: datetime, how: str) -> None:
    await _add(store, job_type, run_after=at)
    [claim] = await store.claim("w", at, LEASE, 1, [job_type])
    if how == "ok":
        await store.succeed(claim, at, Payload("y", b""), KEEP)
    else:
        error = PublicError(Code.FAILED_PRECONDITION, "no", "JOB_FAILED")
        await store.fail(claim, at, error, "Traceback", None, KEEP)


async def test_overview_counts_active_now_and_finished_in_the_window(store: SqlStore) -> None:
    await _finish(store, "a", NOW - timedelta(hours=2), "ok")  # before the window
    await _finish(store, "a", NOW - timedelta(minutes=5), "ok")
    await _finish(store, "a", NOW - timedelta(minutes=4), "fail")
    await _add(store, "a", run_after=NOW - timedelta(minutes=3))  # due 3 minutes ago
    await _add(store, "a", run_after=NOW + timedelta(hours=1))  # queued, not due
    await _add(store, "b")
    await store.claim("w", NOW, LEASE, 1, ["b"])
    queued_b = await _add(store, "b")
    await store.cancel(queued_b, "o", NOW, lambda _: KEEP)

    found = await store.overview(None, NOW - timedelta(minutes=15), NOW)

    assert found == [
        JobTypeOverview(
            "a", queued=2, succeeded=1, failed=1, oldest_due=NOW - timedelta(minutes=3)
        ),
        JobTypeOverview("b", running=1, cancelled=1),
    ]
    assert found[0].finished == 2
    # Plain ints on both databases (PostgreSQL sums counts as numeric).
    assert all(type(n) is int for n in (found[0].queued, found[0].succeeded, found[1].running))


async def test_overview_of_one_owner_leaves_out_the_others(store: SqlStore) -> None:
    await _add(store, "a", owner="alice")
    await _add(store, "a", owner="bob")
    await _add(store, "b", owner="bob")
    since = NOW - timedelta(minutes=15)
    assert await store.overview("alice", since, NOW) == [
        JobTypeOverview("a", queued=1, oldest_due=NOW)
    ]
    assert [o.job_type for o in await store.overview(None, since, NOW)] == ["a", "b"]


def _worker(worker_id: str, heartbeat: datetime) -> WorkerRecord:
    return WorkerRecord(worker_id, "host-1", 123, 4, 0, ("a", "b"), NOW, heartbeat)


async def test_workers_announce_heartbeat_and_leave(store: SqlStore) -> None:
    await store.announce_worker(_worker("w1", NOW))
    await store.announce_worker(_worker("w2", NOW))
    assert await store.worker_heartbeat("w1", NOW + timedelta(seconds=5), 3)
    [w1, w2] = await store.workers()
    assert (w1.id, w1.running, w1.heartbeat) == ("w1", 3, NOW + timedelta(seconds=5))
    assert (w1.host, w1.pid, w1.slots, w1.job_types, w1.started) == (
        "host-1",
        123,
        4,
        ("a", "b"),
        NOW,
    )
    assert w2.id == "w2"
    # Announcing again (a restart with the same id) replaces the row.
    await store.announce_worker(_worker("w2", NOW + timedelta(seconds=9)))
    assert [w.heartbeat for w in await store.workers()] == [
        NOW + timedelta(seconds=5),
        NOW + timedelta(seconds=9),
    ]
    await store.remove_worker("w1")
    assert [w.id for w in await store.workers()] == ["w2"]


async def test_stale_workers_are_cleaned_up_and_their_heartbeat_says_so(store: SqlStore) -> None:
    await store.announce_worker(_worker("old", NOW - timedelta(minutes=5)))
    await store.announce_worker(_worker("fresh", NOW))
    assert await store.remove_stale_workers(NOW - timedelta(seconds=30)) == 1
    assert [w.id for w in await store.workers()] == ["fresh"]
    assert not await store.worker_heartbeat("old", NOW, 0)


async def test_list_oldest_first_pages_by_keyset(store: SqlStore) -> None:
    ids = [await _add(store, "a", run_after=NOW + timedelta(seconds=i)) for i in range(5)]
    first = await store.list("o", Filter(), None, 2, NOW + timedelta(minutes=1), oldest_first=True)
    assert [op.id for op in first] == ids[:2]
    after = Cursor(first[-1].create_time, first[-1].id)
    rest = await store.list("o", Filter(), after, 10, NOW + timedelta(minutes=1), oldest_first=True)
    assert [op.id for op in rest] == ids[2:]
    newest = await store.list("o", Filter(), None, 10, NOW + timedelta(minutes=1))
    assert [op.id for op in newest] == ids[::-1]
