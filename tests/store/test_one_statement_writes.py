"""PostgreSQL: the worker's writes (the claim, a batch's finishing writes,
the pool's lease renewal) are ONE statement each, a transaction of their own
in autocommit with their NOTIFY folded in (worker_sql.one_statement). On the
real PostgreSQL: no transaction of the store's is opened for them, another
process hears each with the payload `pg_notify.encode` would send, a
refused write is not announced, a claim that fails leaves the finishes
of its batch stored (it fails alone, even with an error that is not the
database being down), and a claim goes out beside a finishing write still
out instead of waiting behind it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import event, exc

from lrod.domain.errors import Code, LrodError, Unavailable
from lrod.domain.names import new_operation_id
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.states import State
from lrod.domain.submission import NewJob
from lrod.store import pg_notify
from lrod.store.direct_reads import AsyncpgReader
from lrod.store.errors import translated_errors
from lrod.store.protocol import Claim
from lrod.store.sql_store import SqlStore
from tests.helpers import in_turn
from tests.store.conftest import plain_dsn

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEASE = timedelta(minutes=5)
KEEP = timedelta(days=1)
RESULT = Payload("type.googleapis.com/y", b"out")
DOOMED = "w-doomed"
LOCK_KEY = 4242


@pytest.fixture
def store(pg_store: SqlStore) -> SqlStore:
    return pg_store


async def _next(payloads: list[dict[str, Any]], seen: int) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while len(payloads) <= seen:
            await asyncio.sleep(0.01)
    return payloads[seen]


def _job() -> NewJob:
    return NewJob(
        id=new_operation_id(),
        owner="alice",
        job_type="t",
        input=Payload("x", b""),
        max_attempts=3,
        create_time=NOW,
        run_after=NOW,
    )


async def _queued(store: SqlStore, n: int) -> list[Operation]:
    return [(await store.create(_job(), "fp"))[0] for _ in range(n)]


async def test_a_claim_and_finishes_open_no_transaction_and_are_heard(
    store: SqlStore, heard: list[dict[str, Any]]
) -> None:
    ops = await _queued(store, 3)
    await _next(heard, 2)  # the creates' own
    begun: list[object] = []
    event.listen(store._db.writer.sync_engine, "begin", begun.append)

    claims = await store.claim("w1", NOW, LEASE, 3, ["t"])
    assert sorted(c.operation.id for c in claims) == sorted(op.id for op in ops)
    claimed = await _next(heard, 3)
    assert claimed == {"o": store.origin, "ops": sorted(op.id for op in ops), "c": []}

    first, second, third = claims
    retry_at = NOW + timedelta(minutes=1)
    oops = PublicError(Code.UNAVAILABLE, "later", "DOWN")
    written = await asyncio.gather(
        store.succeed(first, NOW, RESULT, KEEP),
        store.fail(second, NOW, oops, None, retry_at, KEEP),
        store.succeed(third, NOW, RESULT, KEEP),
    )
    assert [w.state if w else None for w in written] == [
        State.SUCCEEDED,
        State.QUEUED,
        State.SUCCEEDED,
    ]
    finished = [await _next(heard, 4)]
    if len(finished[0]["ops"]) < 3:  # the first finish may flush alone
        finished.append(await _next(heard, 5))
    assert sorted(i for body in finished for i in body["ops"]) == sorted(op.id for op in ops)
    # Work is announced with the retry's time, as `encode` writes it, and
    # parses as the listener parses it.
    [due] = [body["w"] for body in finished if "w" in body]
    assert datetime.fromisoformat(due) == retry_at
    assert all(body["o"] == store.origin and body["c"] == [] for body in finished)

    beats = await store.renew([Claim(second.operation, second.lease_token), third], NOW, LEASE)
    assert [b.held for b in beats] == [False, False]  # neither runs any more
    assert begun == []


async def test_creates_are_one_statement_with_their_labels_and_heard(
    store: SqlStore, heard: list[dict[str, Any]]
) -> None:
    begun: list[object] = []
    event.listen(store._db.writer.sync_engine, "begin", begun.append)
    later = NOW + timedelta(hours=1)
    jobs = [
        replace(_job(), labels={"team": "a", "tier": "gold"}),
        replace(_job(), run_after=later),
        replace(_job(), labels={"team": "b"}),
    ]
    created = await asyncio.gather(*[store.create(job, "fp") for job in jobs])
    assert all(new for _, new in created)
    bodies = [await _next(heard, 0)]
    while sum(len(b["ops"]) for b in bodies) < len(jobs):
        bodies.append(await _next(heard, len(bodies)))
    assert sorted(i for b in bodies for i in b["ops"]) == sorted(j.id for j in jobs)
    assert all(b["o"] == store.origin and b["c"] == [] and "w" in b for b in bodies)
    assert min(datetime.fromisoformat(b["w"]) for b in bodies) == NOW
    for job in jobs:
        stored = await store.get(job.id, "alice", NOW)
        assert (stored.labels, stored.run_after) == (job.labels, job.run_after)
    assert begun == []


async def test_a_heartbeat_is_one_statement_and_its_progress_heard(
    store: SqlStore, heard: list[dict[str, Any]]
) -> None:
    [op] = await _queued(store, 1)
    [claim] = await store.claim("w1", NOW, LEASE, 1, ["t"])
    await _next(heard, 1)
    begun: list[object] = []
    event.listen(store._db.writer.sync_engine, "begin", begun.append)
    later = NOW + timedelta(seconds=5)
    beat = await store.heartbeat(claim, later, LEASE, Progress(3, 7, "copying"))
    assert (beat.held, beat.cancel_requested) == (True, False)
    assert await _next(heard, 2) == {"o": store.origin, "ops": [op.id], "c": []}
    stored = await store.get(op.id, "alice", later)
    assert (stored.progress, stored.update_time, stored.version) == (
        Progress(3, 7, "copying"),
        later,
        claim.operation.version + 1,
    )
    assert stored.lease_expires_at == later + LEASE
    assert begun == []
    # A lease alone changes nothing to announce; a cancel request is relayed.
    await store.cancel(op.id, "alice", later, lambda _: KEEP)  # a transaction
    await _next(heard, 3)
    begun.clear()
    beat = await store.heartbeat(claim, later, LEASE, None)
    assert (beat.held, beat.cancel_requested) == (True, True)
    forged = Claim(claim.operation, "not-the-token")
    assert not (await store.heartbeat(forged, later, LEASE, Progress(9, 9))).held
    assert (await store.get(op.id, "alice", later)).progress == Progress(3, 7, "copying")
    await asyncio.sleep(0.1)
    assert len(heard) == 4  # neither of the last two was announced
    assert begun == []


async def test_a_refused_finish_is_not_announced(
    store: SqlStore, heard: list[dict[str, Any]]
) -> None:
    [op] = await _queued(store, 1)
    [claim] = await store.claim("w1", NOW, LEASE, 1, ["t"])
    await _next(heard, 1)
    forged = Claim(claim.operation, "not-the-token")
    assert await store.succeed(forged, NOW, RESULT, KEEP) is None
    # The next thing heard is the real finish, not the refused one.
    assert await store.succeed(claim, NOW, RESULT, KEEP) is not None
    assert (await _next(heard, 2))["ops"] == [op.id]
    await asyncio.sleep(0.1)
    assert len(heard) == 3  # the create, the claim, the finish


async def test_the_payload_past_its_limit_says_everything(postgres_url: str) -> None:
    """The folded NOTIFY over as many rows as its payload cannot carry says
    'everything', as `encode` does; under the limit, what `encode` says."""
    origin = "0123456789abcdef"
    sql = (
        "WITH rows AS (SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])"
        " AS r(id, state, run_after)),\n"
        f"{pg_notify.notify_cte('rows', '$4', queued_again=True)}\n"
        "SELECT count(*) FROM note"
    )
    got: asyncio.Queue[str] = asyncio.Queue()
    conn = await asyncpg.connect(plain_dsn(postgres_url))
    try:
        await conn.add_listener(pg_notify.CHANNEL, lambda *args: got.put_nowait(args[3]))
        cases = [
            ([f"op-{i:040d}" for i in range(300)], State.SUCCEEDED.value),
            (["b", "a"], State.QUEUED.value),
        ]
        for ids, state in cases:
            due = NOW + timedelta(microseconds=1500)
            await conn.fetch(sql, ids, [state] * len(ids), [due] * len(ids), origin)
            async with asyncio.timeout(10):
                payload = json.loads(await got.get())
            queued = state == State.QUEUED.value
            want = pg_notify.encode(origin, ids, (), queued, due if queued else None)
            assert payload == json.loads(want)
    finally:
        await conn.close()


async def _doom_claims_of(postgres_url: str, worker: str) -> psycopg.AsyncConnection[Any]:
    """A real lock timeout for every claim by `worker`: the attempts row it
    opens waits for an advisory lock that the returned connection holds,
    and gives up after 100 ms (SQLSTATE 55P03, which the store translates
    as it translates a statement timeout: UNAVAILABLE). Nothing else waits
    for that lock: finishing writes update attempts rows, never insert."""
    conn = await psycopg.AsyncConnection.connect(plain_dsn(postgres_url), autocommit=True)
    await conn.execute(
        f"""
        CREATE FUNCTION doomed_claim() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.worker_id = '{worker}' THEN
            PERFORM set_config('lock_timeout', '100ms', true);
            PERFORM pg_advisory_xact_lock({LOCK_KEY});
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER doomed_claim BEFORE INSERT ON attempts
          FOR EACH ROW EXECUTE FUNCTION doomed_claim();
        """
    )
    await conn.execute(f"SELECT pg_advisory_lock({LOCK_KEY})")
    return conn


@pytest.mark.parametrize(
    "requeue", [False, True], ids=["finishes-and-claim-as-one", "a-retry-so-apart"]
)
async def test_a_claim_that_fails_leaves_the_finishes_of_its_batch_stored(
    store: SqlStore, postgres_url: str, requeue: bool
) -> None:
    ops = await _queued(store, 6)
    running = await store.claim("w1", NOW, LEASE, 4, ["t"])
    assert len(running) == 4
    holder = await _doom_claims_of(postgres_url, DOOMED)
    batches: list[list[str]] = []
    flush = store._worker_writes._flush

    async def recording(items: list[Any]) -> Any:
        batches.append([type(item).__name__ for item in items])
        return await flush(items)

    store._worker_writes._flush = recording  # type: ignore[assignment]
    oops = PublicError(Code.UNAVAILABLE, "later", "DOWN")
    # With a retry due at once among the finishes, the claim runs after
    # them (a statement of its own, to see the job queued again).
    last = (
        store.fail(running[3], NOW, oops, None, NOW, KEEP)
        if requeue
        else store.succeed(running[3], NOW, RESULT, KEEP)
    )
    try:
        outcomes = await asyncio.gather(
            *[store.succeed(claim, NOW, RESULT, KEEP) for claim in running[:2]],
            in_turn(lambda: store.claim(DOOMED, NOW, LEASE, 2, ["t"])),
            store.succeed(running[2], NOW, RESULT, KEEP),
            last,
            return_exceptions=True,
        )
    finally:
        await holder.close()
    failed_claim = outcomes.pop(2)
    # The claim met a real error that is not the database being down.
    assert isinstance(failed_claim, LrodError), failed_claim
    # It shared a flush with the finishes, which are stored all the same.
    assert any("ClaimAsk" in batch and "Finish" in batch for batch in batches), batches
    assert all(isinstance(o, Operation) for o in outcomes), outcomes
    want = [State.SUCCEEDED] * 3 + [State.QUEUED if requeue else State.SUCCEEDED]
    assert [o.state for o in outcomes if isinstance(o, Operation)] == want
    for claim, state in zip(running, want, strict=True):
        assert (await store.get(claim.operation.id, "alice", NOW)).state is state
    # The failed claim took nothing: its jobs are still there to claim.
    left = {op.id for op in ops} - {c.operation.id for c in running}
    if requeue:
        left.add(running[3].operation.id)
    again = await store.claim("w2", NOW, LEASE, 3, ["t"])
    assert {c.operation.id for c in again} == left


async def test_a_connection_left_in_doubt_is_not_pooled_again(store: SqlStore) -> None:
    """A write whose connection fails under it (here: one busy with another
    operation) answers UNAVAILABLE, and the connection is closed, not handed
    to the next write, which gets a fresh one."""
    await _queued(store, 1)
    reader = store._db.direct
    assert reader is not None
    await reader.run("SELECT 1", [])
    [conn] = reader._idle
    busy = asyncio.ensure_future(conn.fetch("SELECT pg_sleep(0.3)"))
    await asyncio.sleep(0.05)
    with pytest.raises(Unavailable):
        await store.claim("w1", NOW, LEASE, 1, ["t"])
    assert conn.is_closed()
    await asyncio.gather(busy, return_exceptions=True)
    assert len(await store.claim("w1", NOW, LEASE, 1, ["t"])) == 1


def test_a_client_side_protocol_error_is_translated_as_on_sqlalchemys_path() -> None:
    """asyncpg's own client errors come out as SQLAlchemy's DBAPIError (so
    the store answers UNAVAILABLE), never raw: a raw one once stopped a
    worker pool's claim loop after an outage."""
    reader = AsyncpgReader("postgresql://nobody@127.0.0.1/none", 1, {})
    stuck = asyncpg.exceptions._base.InternalClientError("another operation is in progress")
    translated = reader._translated("SELECT 1", [], stuck)
    assert isinstance(translated, exc.DBAPIError)
    with pytest.raises(Unavailable), translated_errors():
        raise translated


async def test_a_write_whose_rows_cannot_be_read_back_is_not_run_again(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The finishes and the claim committed as one statement, then reading
    its rows back failed (a bug): every member gets UNAVAILABLE once, and
    the statement is not run again (its finishes would be refused as stale,
    its claim would claim a second set)."""
    await _queued(store, 4)
    claims = await store.claim("w", NOW, LEASE, 2, ["t"])
    one = store._worker_one
    assert one is not None
    runs: list[str] = []
    run = one._run  # type: ignore[attr-defined]

    async def counted(sql: str, args: Any) -> Any:
        runs.append(sql)
        return await run(sql, args)

    def unreadable(*args: object) -> object:
        raise ValueError("simulated: the rows could not be read back")

    monkeypatch.setattr(one, "_run", counted)
    monkeypatch.setattr(one._statements, "written", unreadable)  # type: ignore[attr-defined]
    outcomes = await asyncio.gather(
        *(store.succeed(c, NOW, RESULT, KEEP) for c in claims),
        in_turn(lambda: store.claim("w", NOW, LEASE, 2, ["t"])),
        return_exceptions=True,
    )
    assert len(runs) == 1, runs  # one statement, not run again in halves or apart
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    monkeypatch.undo()
    for claim in claims:
        assert (await store.get(claim.operation.id, "alice", NOW)).state is State.SUCCEEDED
    assert await store.claim("w", NOW, LEASE, 2, ["t"]) == []  # the claim took them once


async def test_a_claim_goes_out_beside_a_finishing_write_that_is_still_out(
    store: SqlStore, postgres_url: str
) -> None:
    """Two worker flushes out at once (dialect.worker_flushes): a finish held
    up by a row lock another session holds, and a claim asked meanwhile, which
    does not wait behind it and takes only queued rows (SKIP LOCKED); the
    finish commits once the lock is released, still fenced by its token."""
    ops = await _queued(store, 4)
    [held_up] = await store.claim("w1", NOW, LEASE, 1, ["t"])
    blocker = await psycopg.AsyncConnection.connect(plain_dsn(postgres_url))
    try:
        await blocker.execute(
            "SELECT 1 FROM operations WHERE id = %s FOR UPDATE", (held_up.operation.id,)
        )
        finishing = asyncio.ensure_future(store.succeed(held_up, NOW, RESULT, KEEP))
        async with asyncio.timeout(5):
            while not store._worker_writes._flushing:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not finishing.done()  # waiting for the row lock
        async with asyncio.timeout(5):
            claimed = await store.claim("w2", NOW, LEASE, 5, ["t"])
        assert not finishing.done()  # the claim did not wait behind it
        assert {c.operation.id for c in claimed} == {op.id for op in ops} - {held_up.operation.id}
    finally:
        await blocker.rollback()
        await blocker.close()
    async with asyncio.timeout(5):
        done = await finishing
    assert done is not None
    assert done.state is State.SUCCEEDED
    assert (await store.get(held_up.operation.id, "alice", NOW)).state is State.SUCCEEDED
