"""The store contract: every method of the storage Protocols
(lrod.store.protocol), exercised through the Protocol on the real SQLite and
PostgreSQL. This is what everything above the store relies on; a rewrite of
a write path must keep it.

`test_every_protocol_member_has_a_contract_test` fails when a Protocol gains
a member that no contract test covers (here, or in the store tests named in
ELSEWHERE, which must still exist)."""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import AsyncIterator, Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from lrod.domain.errors import (
    AlreadyExists,
    Code,
    FailedPrecondition,
    NotFound,
    OperationExpired,
)
from lrod.domain.filters import parse_filter
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.paging import Cursor
from lrod.domain.retry import Backoff, JobPolicy
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.domain.webhooks import DeliveryState
from lrod.store import protocol
from lrod.store.engine import open_database
from lrod.store.migrate import upgrade
from lrod.store.protocol import Claim, OperationStore, Transition
from lrod.store.sql_store import SqlStore

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEASE = timedelta(seconds=30)
KEEP = timedelta(days=1)
AT_ONCE = JobPolicy(Backoff(timedelta(0), timedelta(0)), KEEP)
HOOK = "https://hooks.example.com/done"
# How long a cross-process notification may take to arrive before the test
# gives up: a liveness bound, far above the feeds' own intervals (0.5-1 s).
FEED_PATIENCE = 20.0

# -- which test covers which Protocol member -------------------------------
COVERED: set[str] = set()
# Members whose contract another store test already holds (module::test):
# not repeated here; the completeness test checks that those tests exist.
ELSEWHERE = {
    "OperationStore.overview": "tests.store.test_console_reads::"
    "test_overview_counts_active_now_and_finished_in_the_window",
    "OperationStore.announce_worker": "tests.store.test_console_reads::"
    "test_workers_announce_heartbeat_and_leave",
    "OperationStore.worker_heartbeat": "tests.store.test_console_reads::"
    "test_workers_announce_heartbeat_and_leave",
    "OperationStore.remove_worker": "tests.store.test_console_reads::"
    "test_workers_announce_heartbeat_and_leave",
    "OperationStore.workers": "tests.store.test_console_reads::"
    "test_workers_announce_heartbeat_and_leave",
    "OperationStore.remove_stale_workers": "tests.store.test_console_reads::"
    "test_stale_workers_are_cleaned_up_and_their_heartbeat_says_so",
    "OperationStore.expire": "tests.store.test_expiry::test_expired_before_and_after_the_janitor",
    "OperationStore.claims_in_flight": "tests.execution.test_pipelined_claims::"
    "test_the_database_chooses_the_claims_out",
    "OperationStore.renew": "tests.store.test_claims::test_one_renewal_for_many_leases_each_fenced",
    "OperationStore.rescue": "tests.store.test_endings::test_a_rescued_job_waits_for_its_backoff",
    "OperationStore.get_many": "tests.store.test_get_many::"
    "test_get_many_reads_every_owner_and_skips_unknown_and_expired",
    # What the api keeps (convert.OperationBytes) for get_or_kept.
    "KeptAnswers.known": "tests.unit.test_operation_bytes::"
    "test_known_gives_the_bytes_kept_for_a_version_only",
    "KeptAnswers.version": "tests.unit.test_operation_bytes::"
    "test_version_names_the_version_last_kept_while_its_bytes_are",
}

_F = TypeVar("_F", bound=Callable[..., Any])


def covers(*members: str) -> Callable[[_F], _F]:
    """Mark a test as (part of) the contract of these Protocol members."""

    def mark(test: _F) -> _F:
        COVERED.update(members)
        return test

    return mark


def protocol_members() -> set[str]:
    """Every public member of every Protocol the storage port defines."""
    found: set[str] = set()
    for name, value in vars(protocol).items():
        if inspect.isclass(value) and getattr(value, "_is_protocol", False):
            if value.__module__ != protocol.__name__:
                continue
            members = set(vars(value)) | set(getattr(value, "__annotations__", {}))
            found |= {f"{name}.{m}" for m in members if not m.startswith("_")}
    return found


def test_every_protocol_member_has_a_contract_test() -> None:
    members = protocol_members()
    assert "OperationStore.create" in members  # the introspection sees the methods
    missing = members - COVERED - ELSEWHERE.keys()
    assert not missing, f"Protocol members without a contract test: {sorted(missing)}"
    assert not (COVERED | ELSEWHERE.keys()) - members, "a contract names no Protocol member"
    for where in ELSEWHERE.values():
        module, _, test = where.partition("::")
        assert callable(getattr(importlib.import_module(module), test, None)), where


# -- fixtures ---------------------------------------------------------------
@dataclass
class Heard:
    """A ChangeListener that writes down what it is told."""

    changed: list[set[str]] = field(default_factory=list)
    written: dict[str, Operation] = field(default_factory=dict)
    progressed: set[str] = field(default_factory=set)
    cancels: list[str] = field(default_factory=list)
    work: list[datetime | None] = field(default_factory=list)
    everything: int = 0

    def operations_changed(
        self,
        ids: Iterable[str],
        written: Mapping[str, Operation] | None = None,
        progressed: Container[str] = (),
    ) -> None:
        ids = set(ids)
        self.changed.append(ids)
        self.written.update(written or {})
        self.progressed |= {i for i in ids if i in progressed}

    def cancel_requested(self, ids: Iterable[str]) -> None:
        self.cancels.extend(ids)

    def work_available(self, due: datetime | None = None) -> None:
        self.work.append(due)

    def everything_changed(self) -> None:
        self.everything += 1

    def ids(self) -> set[str]:
        return set().union(*self.changed)

    def clear(self) -> None:
        self.changed.clear()
        self.written.clear()
        self.progressed.clear()
        self.cancels.clear()
        self.work.clear()


class Recorder:
    """A TransitionSubscriber."""

    def __init__(self) -> None:
        self.seen: list[Transition] = []

    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        self.seen.extend(transitions)


@pytest.fixture
def migrated(database_url: str) -> str:
    upgrade(database_url)
    return database_url


@pytest.fixture
def heard() -> Heard:
    return Heard()


@pytest.fixture
async def sql_store(migrated: str, heard: Heard) -> AsyncIterator[SqlStore]:
    opened = SqlStore(open_database(migrated), heard)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def store(sql_store: SqlStore) -> OperationStore:
    """The store as everything above it sees it: the Protocol only."""
    return sql_store


def new_job(owner: str = "alice", job_type: str = "t", **fields: Any) -> NewJob:
    values: dict[str, Any] = {
        "id": new_operation_id(),
        "owner": owner,
        "job_type": job_type,
        "input": Payload("type.googleapis.com/x", b"in"),
        "max_attempts": 3,
        "create_time": NOW,
        "run_after": NOW,
    } | fields
    return NewJob(**values)


async def add(store: OperationStore, owner: str = "alice", **fields: Any) -> Operation:
    job = new_job(owner, **fields)
    op, created = await store.create(job, job.fingerprint())
    assert created
    return op


async def claim_one(store: OperationStore, at: datetime = NOW, job_type: str = "t") -> Claim:
    [claim] = await store.claim("w1", at, LEASE, 1, [job_type])
    return claim


async def lost_lease(store: OperationStore) -> tuple[Claim, Claim]:
    """A claim whose lease ran out and was rescued, and the newer claim."""
    await add(store)
    stale = await claim_one(store)
    later = NOW + LEASE + timedelta(seconds=1)
    assert await store.rescue(later, 10, lambda _: AT_ONCE) == 1
    [fresh] = await store.claim("w2", later, LEASE, 1, ["t"])
    return stale, fresh


# -- creating: idempotency and atomic batches ------------------------------
@covers("OperationStore.create", "OperationStore.get")
async def test_a_repeated_request_id_returns_the_stored_operation(store: OperationStore) -> None:
    job = new_job(request_id="r-1", labels={"team": "a"}, priority=7)
    first, created = await store.create(job, job.fingerprint())
    assert created
    assert (first.id, first.state, first.attempt, first.done) == (job.id, State.QUEUED, 0, False)
    assert (first.labels, first.priority, first.request_id) == ({"team": "a"}, 7, "r-1")
    again = replace(job, id=new_operation_id())
    repeat, created = await store.create(again, again.fingerprint())
    assert (repeat.id, created) == (job.id, False)
    assert await store.get(job.id, "alice", NOW) == first


@covers("OperationStore.create")
async def test_a_request_id_reused_for_another_request_is_refused(store: OperationStore) -> None:
    job = new_job(request_id="r-1")
    await store.create(job, job.fingerprint())
    other = new_job(request_id="r-1", priority=3)
    with pytest.raises(AlreadyExists) as refused:
        await store.create(other, other.fingerprint())
    assert refused.value.reason == "REQUEST_ID_REUSED"
    with pytest.raises(NotFound):
        await store.get(other.id, "alice", NOW)


@covers("OperationStore.create")
async def test_request_ids_and_dedupe_keys_are_per_owner(store: OperationStore) -> None:
    for fields in ({"request_id": "same"}, {"dedupe_key": "report-9"}):
        alice = await add(store, "alice", **fields)
        bob = await add(store, "bob", **fields)
        assert alice.id != bob.id


@covers("OperationStore.create")
async def test_a_dedupe_key_joins_the_active_operation_until_it_ends(store: OperationStore) -> None:
    first = await add(store, dedupe_key="export-7")
    job = new_job(dedupe_key="export-7", input=Payload("type.googleapis.com/x", b"other"))
    joined, created = await store.create(job, job.fingerprint())
    assert (joined.id, created) == (first.id, False)
    # Another job type with the same key is another job.
    await add(store, job_type="u", dedupe_key="export-7")
    claim = await claim_one(store)
    assert claim.operation.id == first.id
    joined, created = await store.create(replace(job, id=new_operation_id()), job.fingerprint())
    assert (joined.id, created) == (first.id, False)  # RUNNING is still active
    await store.succeed(claim, NOW, Payload("y", b""), KEEP)
    fresh = replace(job, id=new_operation_id())
    after, created = await store.create(fresh, fresh.fingerprint())
    assert created
    assert after.id == fresh.id


@covers("OperationStore.create_all")
async def test_a_batch_is_stored_whole_in_order_and_a_retry_repeats_it(
    store: OperationStore,
) -> None:
    jobs = [new_job(request_id=f"b-{i}", priority=i) for i in range(5)]
    items = [(j, j.fingerprint()) for j in jobs]
    stored = await store.create_all(items)
    assert [(op.id, created) for op, created in stored] == [(j.id, True) for j in jobs]
    retried = [(replace(j, id=new_operation_id()), fp) for j, fp in items]
    again = await store.create_all(retried)
    assert [(op.id, created) for op, created in again] == [(j.id, False) for j in jobs]


@covers("OperationStore.create_all", "OperationStore.list")
async def test_a_batch_with_one_refused_member_stores_nothing(store: OperationStore) -> None:
    taken = await add(store, request_id="taken")
    jobs = [new_job(request_id=f"n-{i}") for i in range(3)]
    clash = new_job(request_id="taken", priority=9)  # same request_id, another request
    items = [(j, j.fingerprint()) for j in [jobs[0], jobs[1], clash, jobs[2]]]
    with pytest.raises(AlreadyExists) as refused:
        await store.create_all(items)
    assert refused.value.metadata["index"] == "2"
    assert refused.value.reason == "REQUEST_ID_REUSED"
    assert [op.id for op in await store.list(None, parse_filter(""), None, 50, NOW)] == [taken.id]


@covers("OperationStore.find_repeats")
async def test_find_repeats_answers_as_create_would_and_stores_nothing(
    store: OperationStore,
) -> None:
    by_id = await add(store, request_id="r-1")
    by_key = await add(store, dedupe_key="k-1")
    again = new_job(request_id="r-1")
    reused = new_job(request_id="r-1", priority=5)
    joins = new_job(dedupe_key="k-1")
    fresh = new_job(request_id="r-2")
    other_owner = new_job(owner="bob", request_id="r-1")
    jobs = [again, reused, joins, fresh, other_owner, new_job()]
    found = await store.find_repeats([(j, j.fingerprint()) for j in jobs])
    assert found[0] == by_id
    assert found[2] == by_key
    assert isinstance(found[1], AlreadyExists)
    assert found[1].reason == "REQUEST_ID_REUSED"
    assert found[3:] == [None, None, None]
    listed = await store.list(None, parse_filter(""), None, 50, NOW)
    assert sorted(op.id for op in listed) == sorted([by_id.id, by_key.id])


# -- reading: owners' scope and the admin's ---------------------------------
@covers("OperationStore.get", "OperationStore.list")
async def test_an_owner_sees_only_its_own_and_the_admin_sees_all(store: OperationStore) -> None:
    mine = await add(store, "alice")
    theirs = await add(store, "bob", create_time=NOW + timedelta(seconds=1))
    with pytest.raises(NotFound) as hidden:
        await store.get(theirs.id, "alice", NOW)
    assert not isinstance(hidden.value, OperationExpired)
    assert (await store.get(theirs.id, None, NOW)).owner == "bob"
    everything = parse_filter("")
    assert [op.id for op in await store.list("alice", everything, None, 10, NOW)] == [mine.id]
    assert [op.id for op in await store.list(None, everything, None, 10, NOW)] == [
        theirs.id,
        mine.id,
    ]


@covers("OperationStore.get_or_kept")
async def test_get_or_kept_answers_what_is_kept_for_the_stored_version(
    store: OperationStore,
) -> None:
    op = await add(store, "alice")
    asked: list[tuple[str, int]] = []

    class Kept:
        """Keeps an answer for one version (and says so, as the api's
        kept bytes do)."""

        def __init__(self, version: int) -> None:
            self.kept = version

        def known(self, op_id: str, stored: int) -> str | None:
            asked.append((op_id, stored))
            return "kept" if stored == self.kept else None

        def version(self, op_id: str) -> int | None:
            return self.kept

    # Kept for the stored version: that, for the owner and for an admin.
    assert await store.get_or_kept(op.id, "alice", NOW, Kept(op.version)) == "kept"
    assert await store.get_or_kept(op.id, None, NOW, Kept(op.version)) == "kept"
    assert asked == [(op.id, op.version)] * 2
    # Kept for another version, or nothing kept: the operation, as get reads it.
    assert await store.get_or_kept(op.id, "alice", NOW, Kept(op.version + 1)) == op
    assert await store.get_or_kept(op.id, "alice", NOW, None) == op
    # The scope holds before anything kept is asked for.
    asked.clear()
    with pytest.raises(NotFound) as hidden:
        await store.get_or_kept(op.id, "bob", NOW, Kept(op.version))
    assert not isinstance(hidden.value, OperationExpired)
    with pytest.raises(NotFound):
        await store.get_or_kept(new_operation_id(), "alice", NOW, Kept(op.version))
    assert asked == []
    # A new version is not the kept one.
    claim = await claim_one(store)
    await store.succeed(claim, NOW, Payload("y", b""), timedelta(hours=1))
    done = await store.get(op.id, "alice", NOW)
    assert done.version > op.version
    assert await store.get_or_kept(op.id, "alice", NOW, Kept(op.version)) == done
    # Expired: expired, even when its version is kept.
    later = NOW + timedelta(hours=2)
    for owner in ("alice", None):
        with pytest.raises(OperationExpired):
            await store.get_or_kept(op.id, owner, later, Kept(done.version))
    with pytest.raises(NotFound) as hidden:
        await store.get_or_kept(op.id, "bob", later, Kept(done.version))
    assert not isinstance(hidden.value, OperationExpired)
    # Its tombstone, once the row is gone: expired to its owner, unknown to others.
    assert await store.expire(later, 10) == 1
    with pytest.raises(OperationExpired):
        await store.get_or_kept(op.id, "alice", later, Kept(done.version))
    with pytest.raises(NotFound) as hidden:
        await store.get_or_kept(op.id, "bob", later, Kept(done.version))
    assert not isinstance(hidden.value, OperationExpired)


@covers("OperationStore.list")
async def test_list_pages_newest_first_and_filters(store: OperationStore) -> None:
    ops = [
        await add(
            store,
            create_time=NOW + timedelta(seconds=i),
            job_type="a" if i % 2 else "b",
            labels={"n": str(i)},
        )
        for i in range(5)
    ]
    later = NOW + timedelta(minutes=1)
    everything = parse_filter("")
    page = await store.list("alice", everything, None, 2, later)
    assert [op.id for op in page] == [ops[4].id, ops[3].id]
    after = Cursor(page[-1].create_time, page[-1].id)
    rest = await store.list("alice", everything, after, 10, later)
    assert [op.id for op in rest] == [ops[2].id, ops[1].id, ops[0].id]
    only_a = await store.list("alice", parse_filter("metadata.job_type = a"), None, 10, later)
    assert [op.id for op in only_a] == [ops[3].id, ops[1].id]
    labelled = await store.list("alice", parse_filter("labels.n = 2"), None, 10, later)
    assert [op.id for op in labelled] == [ops[2].id]
    await store.cancel(ops[0].id, "alice", later, lambda _: KEEP)
    done = await store.list("alice", parse_filter("done = true"), None, 10, later)
    assert [op.id for op in done] == [ops[0].id]


@covers("OperationStore.get", "OperationStore.cancel", "OperationStore.delete")
async def test_another_owners_expired_operation_is_unknown_not_expired(
    store: OperationStore,
) -> None:
    await add(store, "bob")
    claim = await claim_one(store)
    await store.succeed(claim, NOW, Payload("y", b""), timedelta(hours=1))
    op_id, later = claim.operation.id, NOW + timedelta(hours=2)
    for attempt in range(2):  # the expired row; then its tombstone
        for call in (
            lambda: store.get(op_id, "alice", later),
            lambda: store.cancel(op_id, "alice", later, lambda _: KEEP),
            lambda: store.delete(op_id, "alice", later),
        ):
            with pytest.raises(NotFound) as hidden:
                await call()
            assert not isinstance(hidden.value, OperationExpired)
        with pytest.raises(OperationExpired):
            await store.get(op_id, "bob", later)
        with pytest.raises(OperationExpired):
            await store.get(op_id, None, later)
        if attempt == 0:
            assert await store.expire(later, 10) == 1


# -- cancelling and deleting -------------------------------------------------
@covers("OperationStore.cancel", "ChangeListener.cancel_requested")
async def test_cancel_ends_a_queued_one_and_marks_a_running_one(
    store: OperationStore, heard: Heard
) -> None:
    queued = await add(store, "alice", job_type="q")
    running = await add(store, "bob")
    claim = await claim_one(store)
    with pytest.raises(NotFound):
        await store.cancel(queued.id, "bob", NOW, lambda _: KEEP)
    assert (await store.get(queued.id, "alice", NOW)).state is State.QUEUED

    retention = {"q": timedelta(hours=3), "t": KEEP}
    cancelled = await store.cancel(queued.id, "alice", NOW, retention.__getitem__)
    assert (cancelled.state, cancelled.done) == (State.CANCELLED, True)
    assert cancelled.error is not None
    assert cancelled.error.code is Code.CANCELLED
    assert cancelled.expire_time == NOW + timedelta(hours=3)
    assert await store.claim("w", NOW, LEASE, 10, ["q"]) == []

    heard.clear()
    marked = await store.cancel(running.id, None, NOW, retention.__getitem__)  # the admin
    assert (marked.state, marked.cancel_requested, marked.done) == (State.RUNNING, True, False)
    assert heard.cancels == [running.id]
    assert running.id in heard.ids()
    beat = await store.heartbeat(claim, NOW, LEASE, None)
    assert (beat.held, beat.cancel_requested) == (True, True)
    # Asked again, or once done: returned unchanged.
    assert await store.cancel(running.id, "bob", NOW, retention.__getitem__) == marked
    assert await store.cancel(queued.id, "alice", NOW, retention.__getitem__) == cancelled


@covers("OperationStore.delete")
async def test_only_a_done_operation_is_deleted_and_only_by_its_owner(
    store: OperationStore,
) -> None:
    op = await add(store)
    with pytest.raises(FailedPrecondition) as active:
        await store.delete(op.id, "alice", NOW)
    assert active.value.reason == "OPERATION_NOT_DONE"
    await store.cancel(op.id, "alice", NOW, lambda _: KEEP)
    with pytest.raises(NotFound):
        await store.delete(op.id, "bob", NOW)
    await store.delete(op.id, "alice", NOW)
    with pytest.raises(NotFound) as gone:
        await store.get(op.id, None, NOW)
    assert not isinstance(gone.value, OperationExpired)  # deleted is unknown, not expired
    assert await store.attempts(op.id) == []


# -- the worker side: claims, fencing, finishing writes --------------------
@covers("OperationStore.claim")
async def test_one_claim_returns_its_jobs_in_claim_order(store: OperationStore) -> None:
    low = await add(store, priority=-1)
    late = await add(store, priority=5, run_after=NOW - timedelta(seconds=1))
    early = await add(store, priority=5, run_after=NOW - timedelta(seconds=9))
    high = await add(store, priority=9)
    claims = await store.claim("w1", NOW, LEASE, 10, ["t"])
    assert [c.operation.id for c in claims] == [high.id, early.id, late.id, low.id]
    assert len({c.lease_token for c in claims}) == 1
    for c in claims:
        assert (c.operation.state, c.operation.attempt) == (State.RUNNING, 1)
        assert (c.operation.lease_owner, c.operation.start_time) == ("w1", NOW)
        assert c.operation.lease_expires_at == NOW + LEASE
    assert await store.claim("w2", NOW, LEASE, 10, ["t"]) == []


@covers("OperationStore.heartbeat", "OperationStore.succeed", "OperationStore.attempts")
async def test_progress_then_success_and_the_attempt_history(store: OperationStore) -> None:
    op = await add(store)
    claim = await claim_one(store)
    beat = await store.heartbeat(claim, NOW, LEASE, Progress(3, 10, "copying"))
    assert (beat.held, beat.cancel_requested) == (True, False)
    assert (await store.get(op.id, "alice", NOW)).progress == Progress(3, 10, "copying")
    end = NOW + timedelta(seconds=5)
    done = await store.succeed(
        claim, end, Payload("type.googleapis.com/y", b"out"), KEEP, progress=Progress(10, 10)
    )
    assert done is not None
    assert (done.state, done.done, done.error) == (State.SUCCEEDED, True, None)
    assert done.result == Payload("type.googleapis.com/y", b"out")
    assert (done.progress, done.end_time, done.expire_time) == (Progress(10, 10), end, end + KEEP)
    assert await store.get(op.id, "alice", end) == done
    [attempt] = await store.attempts(op.id)
    assert (attempt.number, attempt.worker_id, attempt.outcome) == (1, "w1", "SUCCEEDED")
    assert (attempt.start_time, attempt.end_time, attempt.error) == (NOW, end, None)
    # Done: the lease no longer holds.
    assert not (await store.heartbeat(claim, end, LEASE, None)).held


@covers("OperationStore.fail", "OperationStore.attempts")
async def test_a_failed_attempt_retries_later_then_fails_for_good(store: OperationStore) -> None:
    op = await add(store)
    first = await claim_one(store)
    oops = PublicError(Code.UNAVAILABLE, "try later", "UPSTREAM_DOWN")
    retry_at = NOW + timedelta(minutes=1)
    queued = await store.fail(first, NOW, oops, "Traceback: secret", retry_at, KEEP)
    assert queued is not None
    assert (queued.state, queued.done, queued.error) == (State.QUEUED, False, None)
    assert (queued.run_after, queued.last_attempt_error) == (retry_at, oops)
    assert await store.claim("w1", retry_at - timedelta(seconds=1), LEASE, 1, ["t"]) == []
    second = await claim_one(store, retry_at)
    assert second.operation.attempt == 2
    final = PublicError(Code.FAILED_PRECONDITION, "gave up", "ATTEMPTS_EXHAUSTED")
    failed = await store.fail(second, retry_at, oops, "again", None, KEEP, final_error=final)
    assert failed is not None
    assert (failed.state, failed.done, failed.error) == (State.FAILED, True, final)
    assert failed.last_attempt_error == oops
    assert failed.expire_time == retry_at + KEEP
    history = await store.attempts(op.id)
    assert [(a.number, a.outcome, a.error) for a in history] == [
        (1, "QUEUED", oops),
        (2, "FAILED", oops),
    ]
    # The internal text stays in the history, never in the operation.
    assert [a.internal_error for a in history] == ["Traceback: secret", "again"]
    assert "secret" not in repr(await store.get(op.id, "alice", retry_at))


@covers("OperationStore.cancel_running")
async def test_a_running_job_cancelled_by_its_worker(store: OperationStore) -> None:
    op = await add(store)
    claim = await claim_one(store)
    await store.cancel(op.id, "alice", NOW, lambda _: KEEP)
    done = await store.cancel_running(claim, NOW, KEEP, progress=Progress(1, 4))
    assert done is not None
    assert (done.state, done.done, done.progress) == (State.CANCELLED, True, Progress(1, 4))
    assert done.error is not None
    assert done.error.code is Code.CANCELLED
    assert [a.outcome for a in await store.attempts(op.id)] == ["CANCELLED"]


@covers("OperationStore.release")
async def test_a_released_job_is_claimable_at_once_and_its_attempt_not_counted(
    store: OperationStore,
) -> None:
    op = await add(store)
    claim = await claim_one(store)
    later = NOW + timedelta(seconds=3)
    back = await store.release(claim, later)
    assert back is not None
    assert (back.state, back.attempt, back.run_after) == (State.QUEUED, 0, later)
    again = await claim_one(store, later)
    assert again.operation.attempt == 1
    assert [a.outcome for a in await store.attempts(op.id)] == ["RELEASED", "RUNNING"]


@covers(
    "OperationStore.succeed",
    "OperationStore.fail",
    "OperationStore.cancel_running",
    "OperationStore.release",
    "OperationStore.heartbeat",
    "OperationStore.rescue",
)
async def test_a_late_worker_is_refused_by_every_write(store: OperationStore) -> None:
    stale, fresh = await lost_lease(store)
    at = NOW + LEASE + timedelta(seconds=2)
    error = PublicError(Code.INTERNAL, "x", "X")
    forged = Claim(fresh.operation, "not-the-token")
    for late in (stale, forged):
        assert await store.succeed(late, at, Payload("y", b"late"), KEEP) is None
        assert await store.fail(late, at, error, None, None, KEEP) is None
        assert await store.fail(late, at, error, None, at, KEEP) is None
        assert await store.cancel_running(late, at, KEEP) is None
        assert await store.release(late, at) is None
        assert not (await store.heartbeat(late, at, LEASE, Progress(9, 9))).held
    current = await store.get(fresh.operation.id, "alice", at)
    assert (current.state, current.attempt, current.progress) == (State.RUNNING, 2, Progress())
    assert current.lease_owner == "w2"
    assert await store.succeed(fresh, at, Payload("y", b"ok"), KEEP) is not None


# -- announcements after each commit ---------------------------------------
@covers(
    "ChangeListener.operations_changed",
    "ChangeListener.work_available",
    "TransitionSubscriber.transitions_committed",
)
async def test_each_commit_is_announced_to_the_listener(
    store: OperationStore, heard: Heard
) -> None:
    now_job = await add(store)
    assert heard.work == [NOW]
    assert heard.ids() == {now_job.id}
    heard.clear()
    later = NOW + timedelta(minutes=5)
    await add(store, run_after=later)
    assert heard.work == [later]  # the workers' timer: work becomes due then
    heard.clear()

    claim = await claim_one(store)
    assert now_job.id in heard.ids()
    heard.clear()
    await store.heartbeat(claim, NOW, LEASE, None)  # a lease renewal alone changes nothing
    assert heard.ids() == set()
    await store.heartbeat(claim, NOW, LEASE, Progress(1, 2))
    assert heard.ids() == {now_job.id}
    assert heard.progressed == {now_job.id}  # only progress: done-only waiters sleep on
    heard.clear()

    done = await store.succeed(claim, NOW, Payload("y", b""), KEEP)
    assert done is not None
    assert now_job.id in heard.ids()
    assert now_job.id not in heard.progressed
    assert heard.written.get(now_job.id, done) == done  # a handed row is the row as written
    heard.clear()
    assert await store.succeed(claim, NOW, Payload("y", b""), KEEP) is None
    assert heard.ids() == set()  # a refused write tells no one


@covers("TransitionSubscriber.transitions_committed")
async def test_a_failing_subscriber_neither_fails_the_write_nor_silences_the_others(
    sql_store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        def transitions_committed(self, transitions: Sequence[Transition]) -> None:
            raise RuntimeError("subscriber bug")

    recorder = Recorder()
    sql_store.subscribe(Broken())
    sql_store.subscribe(recorder)
    store: OperationStore = sql_store
    op = await add(store)
    cancelled = await store.cancel(op.id, "alice", NOW, lambda _: KEEP)
    assert cancelled.state is State.CANCELLED
    assert [(t.operation, t.source) for t in recorder.seen] == [(cancelled, State.QUEUED)]
    assert (await store.get(op.id, "alice", NOW)).state is State.CANCELLED
    assert "a transition subscriber failed" in caplog.text


@covers(
    "OperationStore.notification_listener",
    "ChangeFeed.start",
    "ChangeFeed.stop",
    "ChangeListener.everything_changed",
)
async def test_another_process_writes_reach_this_ones_listener(
    migrated: str, store: OperationStore
) -> None:
    """Two stores on one database stand for two processes: the feed of one
    tells its listener of the other's writes (by id, or as 'everything may
    have changed')."""
    other_heard = Heard()
    other: OperationStore = SqlStore(open_database(migrated), other_heard)
    feed = other.notification_listener()
    feed.start()
    try:
        # A feed that is not listening yet misses a write (and PostgreSQL's
        # wakes everyone once it is): write until one is heard, as a process
        # would go on writing; then one more write must be heard on its own.
        async with asyncio.timeout(FEED_PATIENCE):
            while not await _heard_within(other_heard, await add(store), 1.0):
                pass
            assert await _heard_within(other_heard, await add(store), FEED_PATIENCE)
    finally:
        await feed.stop()
        await other.close()


async def _heard_within(heard: Heard, op: Operation, patience: float) -> bool:
    """Whether `heard` is told of `op` (by id, or that everything may have
    changed) within `patience` seconds."""
    before = heard.everything
    try:
        async with asyncio.timeout(patience):
            while op.id not in heard.ids() and heard.everything == before:
                await asyncio.sleep(0.02)
    except TimeoutError:
        return False
    return True


@covers("ChangeFeed.start", "ChangeFeed.stop")
async def test_a_feed_stopped_at_once_leaves_the_store_whole(migrated: str) -> None:
    """A process stopped right after its start: the feed's first reading and
    a first write race for the store's connections; stopping the feed must
    not cost the store one, so the write still goes through (bounded here:
    a lost connection would hold it for the pool's 30 s timeout)."""
    for _ in range(4):
        store: OperationStore = SqlStore(open_database(migrated))
        try:
            feed = store.notification_listener()
            feed.start()
            writing = asyncio.ensure_future(store.expire(NOW, 10))
            await store.workers()
            await feed.stop()
            async with asyncio.timeout(10):
                await writing
                await add(store)
        finally:
            await store.close()


# -- webhook deliveries ------------------------------------------------------
@covers(
    "OperationStore.claim_deliveries",
    "OperationStore.finish_delivery",
    "OperationStore.deliveries",
)
async def test_a_delivery_is_held_by_one_claim_and_fenced_by_its_token(
    store: OperationStore,
) -> None:
    op = await add(store, notify_url=HOOK)
    await store.succeed(await claim_one(store), NOW, Payload("y", b""), KEEP)
    assert await store.claim_deliveries(NOW - timedelta(seconds=1), 10, LEASE) == []  # not due
    [first] = await store.claim_deliveries(NOW, 10, LEASE)
    assert (first.delivery.operation_id, first.delivery.url) == (op.id, HOOK)
    assert first.operation.state is State.SUCCEEDED
    assert await store.claim_deliveries(NOW, 10, LEASE) == []  # held

    # Handed back untried: due again at once, the attempt not counted.
    back = await store.finish_delivery(
        first, NOW, counted=False, state=DeliveryState.PENDING, next_attempt_time=NOW
    )
    assert back is not None
    assert (back.state, back.attempts) == (DeliveryState.PENDING, 0)
    [stale] = await store.claim_deliveries(NOW, 10, LEASE)
    # Its lease runs out; another dispatcher takes it: the first one's end is refused.
    later = NOW + LEASE + timedelta(seconds=1)
    [fresh] = await store.claim_deliveries(later, 10, LEASE)
    assert fresh.token != stale.token
    refused = await store.finish_delivery(
        stale, later, counted=True, state=DeliveryState.DELIVERED, status=204
    )
    assert refused is None
    delivered = await store.finish_delivery(
        fresh, later, counted=True, state=DeliveryState.DELIVERED, status=204
    )
    assert delivered is not None
    assert (delivered.state, delivered.attempts, delivered.last_status) == (
        DeliveryState.DELIVERED,
        1,
        204,
    )
    assert delivered.end_time == later
    assert (await store.get(op.id, "alice", later)).delivery == delivered
    assert await store.deliveries(DeliveryState.DELIVERED, 10) == [delivered]
    assert await store.deliveries(DeliveryState.PENDING, 10) == []
    assert await store.deliveries(None, 10) == [delivered]


# -- reads for metrics, quotas and keys --------------------------------------
@covers("OperationStore.queue_stats")
async def test_queue_stats_count_the_queued_and_the_due_per_type(store: OperationStore) -> None:
    await add(store, job_type="a", run_after=NOW - timedelta(minutes=2))
    await add(store, job_type="a", run_after=NOW - timedelta(minutes=1))
    await add(store, job_type="a", run_after=NOW + timedelta(minutes=1))
    await add(store, job_type="b", run_after=NOW + timedelta(minutes=1))
    await add(store, job_type="c")
    await claim_one(store, job_type="c")  # running: not queued
    stats = sorted(await store.queue_stats(NOW), key=lambda s: s.job_type)
    assert [(s.job_type, s.queued, s.due, s.oldest_due) for s in stats] == [
        ("a", 3, 2, NOW - timedelta(minutes=2)),
        ("b", 1, 0, None),
    ]


@covers("OperationStore.usage")
async def test_usage_counts_active_operations_by_owner_and_queued_bytes(
    store: OperationStore,
) -> None:
    big = Payload("type.googleapis.com/x", b"x" * 100)
    await add(store, "alice", input=big)
    await add(store, "alice", job_type="u", input=big)
    await add(store, "bob", job_type="u", input=Payload("type.googleapis.com/x", b"y" * 7))
    done = await add(store, "carol", input=big)
    await store.cancel(done.id, "carol", NOW, lambda _: KEEP)
    await claim_one(store)  # alice's "t": running still counts as active
    usage = await store.usage()
    assert dict(usage.active_by_owner) == {"alice": 2, "bob": 1}
    assert (usage.queued, usage.queued_bytes) == (2, 107)


@covers("OperationStore.server_key", "OperationStore.ping", "OperationStore.close")
async def test_server_keys_are_made_once_and_shared_by_every_process(
    migrated: str, store: OperationStore
) -> None:
    key = await store.server_key("page-tokens")
    assert len(key) == 32
    assert await store.server_key("page-tokens") == key
    assert await store.server_key("other") != key
    other: OperationStore = SqlStore(open_database(migrated))
    try:
        await other.ping()
        assert await other.server_key("page-tokens") == key
    finally:
        await other.close()


@covers("OperationStore.close", "OperationStore.create")
async def test_close_waits_for_the_calls_under_way(migrated: str) -> None:
    store: OperationStore = SqlStore(open_database(migrated))
    job = new_job()
    creating = asyncio.ensure_future(store.create(job, job.fingerprint()))
    await asyncio.sleep(0)  # the call has started
    await store.close()
    op, created = await creating
    assert created
    reopened: OperationStore = SqlStore(open_database(migrated))
    try:
        await reopened.ping()
        assert await reopened.get(job.id, "alice", NOW) == op
    finally:
        await reopened.close()


# -- a Submit handed off to an idle local worker pool -----------------------
@dataclass
class Grant:
    """A HandOff (what WorkerPool.reserve gives), writing down what it is told."""

    job_types: Sequence[str] = ("t",)
    worker_id: str = "w-local"
    lease_token: str = field(default_factory=lambda: new_operation_id())
    now: datetime = NOW
    lease_expires_at: datetime = NOW + LEASE
    told: list[Claim | None] = field(default_factory=list)

    def stored(self, claim: Claim | None) -> None:
        self.told.append(claim)


HAND_OFF = (
    "OperationStore.create_claimed",
    "HandOff.worker_id",
    "HandOff.lease_token",
    "HandOff.now",
    "HandOff.lease_expires_at",
    "HandOff.job_types",
    "HandOff.stored",
)


@covers(*HAND_OFF)
async def test_a_claimed_create_stores_the_job_as_a_claim_leaves_it(
    store: OperationStore, heard: Heard
) -> None:
    job = new_job(labels={"team": "a"}, priority=2)
    grant = Grant()
    op, created = await store.create_claimed(job, job.fingerprint(), grant)
    assert created
    assert (op.state, op.attempt, op.lease_owner) == (State.RUNNING, 1, "w-local")
    assert (op.start_time, op.lease_expires_at, op.labels) == (NOW, NOW + LEASE, {"team": "a"})
    assert await store.get(job.id, "alice", NOW) == op  # the answer is the row
    assert grant.told == [Claim(op, grant.lease_token)]
    [attempt] = await store.attempts(job.id)
    assert (attempt.number, attempt.worker_id, attempt.outcome) == (1, "w-local", "RUNNING")
    # Already claimed: no claim loop is told of work, no claim finds it.
    assert heard.work == []
    assert job.id in heard.ids()
    assert await store.claim("w2", NOW, LEASE, 10, ["t"]) == []
    # Its lease is a claim's: renewed by the token, fenced by it.
    claim = grant.told[0]
    assert claim is not None
    [beat] = await store.renew([claim], NOW + timedelta(seconds=5), LEASE)
    assert beat.held
    stale = Claim(op, "not-the-token")
    assert await store.succeed(stale, NOW, Payload("type.googleapis.com/o", b""), KEEP) is None
    done = await store.succeed(claim, NOW, Payload("type.googleapis.com/o", b"out"), KEEP)
    assert done is not None
    assert done.state is State.SUCCEEDED
    assert [a.outcome for a in await store.attempts(job.id)] == ["SUCCEEDED"]


@covers(*HAND_OFF)
async def test_a_claimed_create_queues_behind_due_work_of_at_least_its_priority(
    store: OperationStore, heard: Heard
) -> None:
    # Not ahead: later than the claim, of a type the pool does not serve.
    await add(store, priority=9, run_after=NOW + timedelta(seconds=1))
    await add(store, priority=9, job_type="other")
    await add(store, priority=5)
    heard.clear()
    level = new_job(priority=5)
    grant = Grant()
    op, created = await store.create_claimed(level, level.fingerprint(), grant)
    assert created
    assert (op.state, op.attempt, op.lease_owner) == (State.QUEUED, 0, None)
    assert grant.told == [None]
    assert heard.work == [NOW]  # queued after all: the claim loops are told
    assert await store.attempts(level.id) == []
    assert await store.get(level.id, "alice", NOW) == op
    higher = new_job(priority=6)
    grant = Grant()
    op, created = await store.create_claimed(higher, higher.fingerprint(), grant)
    assert created
    assert op.state is State.RUNNING
    assert grant.told == [Claim(op, grant.lease_token)]


@covers(*HAND_OFF)
async def test_a_claimed_create_of_a_stored_request_id_starts_nothing(
    store: OperationStore,
) -> None:
    job = new_job(request_id="r-1")
    first, _ = await store.create(job, job.fingerprint())
    again = replace(job, id=new_operation_id())
    grant = Grant()
    repeat, created = await store.create_claimed(again, again.fingerprint(), grant)
    assert (repeat, created, grant.told) == (first, False, [None])
    reused = new_job(request_id="r-1", priority=3)
    grant = Grant()
    with pytest.raises(AlreadyExists):
        await store.create_claimed(reused, reused.fingerprint(), grant)
    assert grant.told == [None]
    assert await store.attempts(first.id) == []
    # A repeat of a handed-off Submit returns it, still one attempt (above
    # the queued one's priority: it is handed off).
    fresh = new_job(request_id="r-2", priority=1)
    grant = Grant()
    handed, _ = await store.create_claimed(fresh, fresh.fingerprint(), grant)
    assert handed.state is State.RUNNING
    repeat, created = await store.create(replace(fresh, id=new_operation_id()), fresh.fingerprint())
    assert (repeat, created) == (handed, False)
    assert len(await store.attempts(fresh.id)) == 1
