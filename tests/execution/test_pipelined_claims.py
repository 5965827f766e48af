"""A second claim out (WorkerSettings.claims_in_flight, PostgreSQL's default):
the pool asks for the next jobs while a claim is out, within its room (free
slots plus claim_ahead, every claim out counted at its whole limit); a stop
waits for the claims out and hands back their jobs; no job runs twice. On
the real SQLite and the real PostgreSQL, the second claim forced on for
both. Observed through counts (claims out, handlers running, attempts),
never through time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf import empty_pb2, wrappers_pb2

from lrod import JobContext, Registry
from lrod.domain.operation import Payload
from lrod.domain.states import State
from lrod.hub import ChangeHub
from lrod.settings import WorkerSettings
from lrod.store.engine import open_database
from lrod.store.migrate import upgrade
from lrod.store.protocol import Claim
from lrod.store.sql_store import SqlStore
from lrod.worker import WorkerPool
from tests.store.test_contract import new_job

COUNTED = "test.counted"
STRING = "type.googleapis.com/google.protobuf.StringValue"


class Counted:
    """A real job's record: handlers running at once (and the most), runs
    per key, and a gate per key the test opens (keys not in `gated` run
    through at once)."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.runs: Counter[str] = Counter()
        self.gated: set[str] = set()
        self.gates: dict[str, asyncio.Event] = {}

    def gate(self, key: str) -> asyncio.Event:
        return self.gates.setdefault(key, asyncio.Event())

    def started(self) -> list[str]:
        return [key for key in self.runs if self.runs[key]]

    def registry(self) -> Registry:
        registry = Registry()

        @registry.job(COUNTED, input=wrappers_pb2.StringValue, output=empty_pb2.Empty)
        async def counted(ctx: JobContext, key: wrappers_pb2.StringValue) -> empty_pb2.Empty:
            """Counts itself running; waits for its gate if gated."""
            self.running += 1
            self.most = max(self.most, self.running)
            self.runs[key.value] += 1
            try:
                if key.value in self.gated:
                    await self.gate(key.value).wait()
                else:
                    await asyncio.sleep(0)
            finally:
                self.running -= 1
            return empty_pb2.Empty()

        return registry


class ClaimsOut:
    """The store for the pool: counts the claims out (asked, not yet
    answered) and, while `hold` is set, keeps each claim asked from the
    database until `let_go`; at each claim, checks that the pool's jobs and
    claims out stay within its slots plus claim_ahead."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.pool: WorkerPool | None = None
        self.hold = False
        self.let_go = asyncio.Event()
        self.out = 0
        self.most_out = 0
        self.asked: list[int] = []
        self.over: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def claim(
        self, worker_id: str, now: datetime, lease: timedelta, limit: int, job_types: Any
    ) -> Sequence[Claim]:
        pool = self.pool
        assert pool is not None
        # This claim is one of the pool's claims out by now.
        held = pool.running_count + pool.queued_count + sum(pool._claiming.values())
        room = pool.settings.concurrency + pool.settings.claim_ahead
        if held > room:
            self.over.append(f"{held} jobs and claims out for a room of {room}")
        self.asked.append(limit)
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            if self.hold:
                await self.let_go.wait()
            return await self._store.claim(worker_id, now, lease, limit, job_types)
        finally:
            self.out -= 1


@pytest.fixture
async def sql_store(database_url: str) -> AsyncIterator[SqlStore]:
    upgrade(database_url)
    store = SqlStore(open_database(database_url), ChangeHub())
    try:
        yield store
    finally:
        await store.close()


async def _add(store: SqlStore, keys: Sequence[str]) -> dict[str, str]:
    """One queued counted job per key: key -> operation id."""
    ids: dict[str, str] = {}
    for key in keys:
        value = wrappers_pb2.StringValue(value=key).SerializeToString()
        job = new_job(job_type=COUNTED, input=Payload(STRING, value))
        op, _ = await store.create(job, job.fingerprint())
        ids[key] = op.id
    return ids


async def _until(condition: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(20):
            while not condition():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"never: {what}") from None


async def _states(store: SqlStore, ids: dict[str, str]) -> dict[str, State]:
    now = datetime.now(UTC)
    return {key: (await store.get(op_id, None, now)).state for key, op_id in ids.items()}


async def _all_done(store: SqlStore, ids: dict[str, str]) -> None:
    async with asyncio.timeout(30):
        while not all(state.terminal for state in (await _states(store, ids)).values()):
            await asyncio.sleep(0.02)


def _pool(store: Any, counted: Counted, **settings: Any) -> WorkerPool:
    values: dict[str, Any] = {
        "concurrency": 2,
        "claim_ahead": 2,
        # Ahead in full however long the gated handlers are held.
        "claim_ahead_wait": 3600.0,
        "claims_in_flight": 2,
        "lease": timedelta(seconds=10),
        "poll_interval": 60,
    }
    hub = store.listener
    assert isinstance(hub, ChangeHub)
    pool = WorkerPool(store, hub, counted.registry(), WorkerSettings(**(values | settings)))
    # As if a handler had finished at once: the first claim takes the
    # slots and claim_ahead (a new pool claims nothing ahead until then).
    pool._handler_mean = 0.0
    return pool


async def _two_claims_out(
    sql_store: SqlStore, counted: Counted
) -> tuple[WorkerPool, ClaimsOut, dict[str, str]]:
    """Two slots, two ahead, six gated jobs: the first claim takes four (two
    start, two wait in the local queue). Claims held, each freed slot starts
    a queued job and its claim goes out: two claims of one job each out."""
    keys = [f"k{i}" for i in range(6)]
    counted.gated |= set(keys)
    ids = await _add(sql_store, keys)
    claims = ClaimsOut(sql_store)
    pool = _pool(claims, counted)
    claims.pool = pool
    pool.start()
    await _until(lambda: len(counted.started()) == 2 and pool.queued_count == 2, "4 claimed")
    claims.hold = True
    for number, key in enumerate(counted.started(), start=1):
        counted.gate(key).set()
        await _until(lambda n=number: claims.out == n, f"{number} claims out")
    assert claims.asked == [4, 1, 1]
    assert counted.running == 2
    assert pool.queued_count == 0
    return pool, claims, ids


async def test_a_second_claim_goes_out_while_the_first_is_out(sql_store: SqlStore) -> None:
    counted = Counted()
    pool, claims, ids = await _two_claims_out(sql_store, counted)
    try:
        # Two out, each counted whole: no third, the room is full.
        assert claims.most_out == 2
        claims.let_go.set()
        await _until(lambda: pool.queued_count + counted.running == 4, "both answered")
        for key in ids:
            counted.gate(key).set()
        await _all_done(sql_store, ids)
    finally:
        await pool.stop(1.0)
    assert set((await _states(sql_store, ids)).values()) == {State.SUCCEEDED}
    assert counted.runs == Counter(dict.fromkeys(ids, 1))
    assert counted.most == 2
    assert claims.over == []
    for op_id in ids.values():
        assert [a.outcome for a in await sql_store.attempts(op_id)] == ["SUCCEEDED"]


async def test_a_stop_hands_back_the_jobs_of_the_claims_out(sql_store: SqlStore) -> None:
    counted = Counted()
    pool, claims, ids = await _two_claims_out(sql_store, counted)
    finished = set(counted.started()[:2])
    stopping = asyncio.create_task(pool.stop(0))
    try:
        assert pool._loop_task is not None
        await _until(pool._loop_task.done, "the claim loop ended")
        await asyncio.sleep(0)
        assert not stopping.done()  # it waits for the claims out
        claims.let_go.set()
        await stopping
    finally:
        claims.let_go.set()
        await asyncio.gather(stopping, return_exceptions=True)
    # The two late claims' jobs never started; they and the two running
    # ones are handed back: queued, their attempt not counted.
    late = set(ids) - set(counted.started())
    assert len(late) == 2
    states = await _states(sql_store, ids)
    assert {key for key, state in states.items() if state is State.SUCCEEDED} == finished
    for key in set(ids) - finished:
        assert states[key] is State.QUEUED, key
        got = await sql_store.get(ids[key], None, datetime.now(UTC))
        assert got.attempt == 0
        outcomes = [a.outcome for a in await sql_store.attempts(ids[key])]
        assert outcomes == ["RELEASED"], (key, outcomes)
    # Handed back, they run at once for the next pool; each handler ran
    # once more at most (the two running ones were cut short by the drain).
    counted.gated.clear()
    for event in counted.gates.values():
        event.set()
    again = _pool(sql_store, counted, claims_in_flight=None)
    again.start()
    try:
        await _all_done(sql_store, ids)
    finally:
        await again.stop(1.0)
    assert set((await _states(sql_store, ids)).values()) == {State.SUCCEEDED}
    assert all(counted.runs[key] == 1 for key in finished | late)
    assert all(counted.runs[key] == 2 for key in set(ids) - finished - late)


async def test_many_jobs_run_once_within_the_slots(sql_store: SqlStore) -> None:
    counted = Counted()
    ids = await _add(sql_store, [f"j{i}" for i in range(80)])
    claims = ClaimsOut(sql_store)
    pool = _pool(claims, counted, concurrency=3, claim_ahead=3)
    claims.pool = pool
    pool.start()
    try:
        await _all_done(sql_store, ids)
    finally:
        await pool.stop(1.0)
    assert set((await _states(sql_store, ids)).values()) == {State.SUCCEEDED}
    assert counted.runs == Counter(dict.fromkeys(ids, 1))
    assert counted.most <= 3
    assert claims.over == []
    assert claims.most_out <= 2


async def test_the_database_chooses_the_claims_out(sql_store: SqlStore, database_url: str) -> None:
    expected = 1 if database_url.startswith("sqlite") else 2
    assert sql_store.claims_in_flight == expected
    pool = _pool(sql_store, Counted(), claims_in_flight=None)
    assert pool._claims_in_flight == expected


class SucceedsHeld:
    """The store for the pool: every finishing write (succeed) waits until
    `let_go`, counted while it waits."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.let_go = asyncio.Event()
        self.waiting = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def succeed(self, *args: Any, **kwargs: Any) -> Any:
        self.waiting += 1
        try:
            await self.let_go.wait()
        finally:
            self.waiting -= 1
        return await self._store.succeed(*args, **kwargs)


async def test_a_written_outcome_starts_the_next_queued_job(sql_store: SqlStore) -> None:
    # One slot, eight ahead, one claim out at most: the outcomes being
    # written (the slot's and one more) hold the slot, with jobs waiting in
    # the local queue and no handler running. Once those writes are done,
    # the queued jobs must start, with no handler's return or claim's
    # answer to set them off (the poll is a minute away).
    counted = Counted()
    ids = await _add(sql_store, [f"k{i}" for i in range(10)])
    held = SucceedsHeld(sql_store)
    pool = _pool(held, counted, concurrency=1, claim_ahead=8, claims_in_flight=1)
    pool.start()
    try:
        await _until(lambda: held.waiting == 2, "two outcomes being written")
        assert counted.running == 0
        assert pool.queued_count == 7
        held.let_go.set()
        await _all_done(sql_store, ids)
    finally:
        held.let_go.set()
        await pool.stop(1.0)
    assert set((await _states(sql_store, ids)).values()) == {State.SUCCEEDED}
    assert counted.runs == Counter(dict.fromkeys(ids, 1))


async def test_a_hand_off_stored_queued_starts_the_next_queued_job(sql_store: SqlStore) -> None:
    # One slot, held for a Submit being handed off, while claims bring the
    # jobs stored meanwhile into the local queue (the slot is not free: none
    # starts) until the room is more than half held and the pool claims no
    # more. The Submit is then stored queued (not claimed): the slot is free
    # again and a queued job must start, with no handler's return or claim's
    # answer to set it off (the poll is a minute away).
    counted = Counted()
    pool = _pool(
        sql_store, counted, concurrency=1, claim_ahead=8, claims_in_flight=1, hand_off=True
    )
    pool.start()
    try:
        await _until(lambda: pool.idle, "the pool idle")
        held = pool.reserve(COUNTED, 0, datetime.now(UTC))
        assert held is not None
        ids = await _add(sql_store, [f"k{i}" for i in range(7)])
        await _until(
            lambda: pool.queued_count >= 5 and not pool._claiming and pool._claim_wanted() == 0,
            "claimed ahead until no further claim is wanted",
        )
        assert counted.running == 0
        held.stored(None)
        await _all_done(sql_store, ids)
    finally:
        await pool.stop(1.0)
    assert set((await _states(sql_store, ids)).values()) == {State.SUCCEEDED}
    assert counted.runs == Counter(dict.fromkeys(ids, 1))
