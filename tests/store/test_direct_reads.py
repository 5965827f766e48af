"""GetOperation's reads on the driver directly (engine.InlineReader on
SQLite, direct_reads.AsyncpgReader on PostgreSQL): rows as the SQLAlchemy
path gives them, a caller that leaves mid-read, a database that goes away."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import asyncpg
import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2

from lrod.app import Service
from lrod.domain.errors import Code, NotFound, OperationExpired, Unavailable
from lrod.domain.operation import Payload, Progress, PublicError
from lrod.store.engine import Database, PreparedRead, open_database
from lrod.store.migrate import upgrade
from lrod.store.sql_store import SqlStore
from lrod.store.statements import GET_ANY_OPERATION, GET_DELIVERY, GET_OPERATIONS_IN_ARRAY
from lrod.testing.postgres import ThrowawayCluster
from lrod.v1 import job_service_pb2_grpc
from tests.helpers import submit
from tests.store.test_contract import HOOK, KEEP, LEASE, NOW, add, claim_one


async def _direct(database: Database, read: PreparedRead, params: Mapping[str, Any]) -> Any:
    if database.inline is not None:
        return database.inline.first(read, params)
    assert database.direct is not None
    return await database.direct.first(read, params)


def _prepare(database: Database, statement: Any) -> PreparedRead:
    reader = database.inline or database.direct
    assert reader is not None
    return reader.prepare(statement)


def _typed(row: Any) -> list[tuple[Any, type, Any]]:
    return [(v, type(v), getattr(v, "tzinfo", None)) for v in row]


async def test_direct_rows_equal_the_sqlalchemy_rows(opened: tuple[Database, SqlStore]) -> None:
    database, store = opened
    # Every column type, with values and NULLs: a bare queued row, a running
    # one (lease), a failed one (JSON errors, timeout), a done one with a
    # webhook (result bytes, delivery row).
    bare = await add(store, "alice")
    running = await add(store, "alice", labels={"team": "a", "ü": "é"}, request_id="r-1")
    await add(store, "alice", timeout=timedelta(seconds=2.5), dedupe_key="d-1", priority=-3)
    await add(store, "alice", notify_url=HOOK)
    ids = [bare.id, running.id]
    claimed = [await claim_one(store) for _ in range(4)]
    by_id = {c.operation.id: c for c in claimed}
    oops = PublicError(Code.UNAVAILABLE, "try later", "UPSTREAM_DOWN", metadata={"k": "v"})
    failed = next(c for c in claimed if c.operation.dedupe_key == "d-1")
    await store.fail(failed, NOW, oops, "secret", None, KEEP, final_error=oops)
    hooked = next(c for c in claimed if c.operation.notify_url == HOOK)
    await store.succeed(
        hooked, NOW, Payload("type.googleapis.com/y", b"\x00out"), KEEP, progress=Progress(1, 2)
    )
    await store.heartbeat(by_id[running.id], NOW, LEASE, Progress(3, 10, "copying"))
    ids += [failed.operation.id, hooked.operation.id]

    read = _prepare(database, GET_ANY_OPERATION)
    olds = {}
    for op_id in ids:
        params = {"id": op_id}
        old = await database.read(lambda conn, p=params: conn.execute(GET_ANY_OPERATION, p).first())
        new = await _direct(database, read, params)
        assert new._fields == tuple(old._fields)
        assert _typed(new) == _typed(old)
        olds[op_id] = old
    if database.direct is not None:  # get_many's one statement for any number of ids
        many = database.direct.prepare(GET_OPERATIONS_IN_ARRAY)
        rows = await database.direct.all(many, {"ids": [*ids, "nothing"]})
        assert sorted(_typed(r) for r in rows) == sorted(_typed(o) for o in olds.values())
    delivery = _prepare(database, GET_DELIVERY)
    params = {"id": hooked.operation.id}
    old = await database.read(lambda conn: conn.execute(GET_DELIVERY, params).first())
    new = await _direct(database, delivery, params)
    assert old is not None
    assert _typed(new) == _typed(old)
    assert await _direct(database, read, {"id": "nothing"}) is None

    # And through the store: the same Operation as the list (the SQLAlchemy
    # path) gives, delivery included.
    listed = {op.id: op for op in await store.list(None, _everything(), None, 10, NOW)}
    for op_id in ids:
        assert await store.get(op_id, "alice", NOW) == listed[op_id]
        assert await store.get(op_id, None, NOW) == listed[op_id]
    assert await store.get_many([*ids, "nothing"], NOW) == {i: listed[i] for i in ids}
    assert (await store.get(hooked.operation.id, "alice", NOW)).delivery is not None


def _everything() -> Any:
    from lrod.domain.filters import parse_filter

    return parse_filter("")


async def test_scopes_tombstones_and_expiry(opened: tuple[Database, SqlStore]) -> None:
    _, store = opened
    await add(store, "bob")
    claim = await claim_one(store)
    await store.succeed(claim, NOW, Payload("y", b""), timedelta(hours=1))
    op_id, later = claim.operation.id, NOW + timedelta(hours=2)
    assert (await store.get(op_id, None, NOW)).owner == "bob"
    with pytest.raises(NotFound) as hidden:
        await store.get(op_id, "alice", NOW)
    assert not isinstance(hidden.value, OperationExpired)
    for attempt in range(2):  # the expired row; then its tombstone
        for owner in ("bob", None):
            with pytest.raises(OperationExpired):
                await store.get(op_id, owner, later)
        with pytest.raises(NotFound) as hidden:
            await store.get(op_id, "alice", later)
        assert not isinstance(hidden.value, OperationExpired)
        if attempt == 0:
            assert await store.expire(later, 10) == 1
    with pytest.raises(NotFound) as unknown:
        await store.get("0" * 32, None, NOW)
    assert not isinstance(unknown.value, OperationExpired)


async def _lock_operations(url: str) -> asyncpg.Connection:
    """A session that holds the operations table so that reads of it wait."""
    conn = await asyncpg.connect(url)
    await conn.execute("BEGIN; LOCK TABLE operations IN ACCESS EXCLUSIVE MODE")
    return conn


async def _until_blocked(url: str) -> None:
    """Until a GetOperation's read waits on the lock (the server's own view)."""
    conn = await asyncpg.connect(url)
    try:
        async with asyncio.timeout(30):
            while not await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%operations.owner = $%'"
            ):
                await asyncio.sleep(0.02)
    finally:
        await conn.close()


async def test_a_caller_that_leaves_mid_read_leaves_the_reader_whole(postgres_url: str) -> None:
    upgrade(postgres_url)
    database = open_database(postgres_url, pool_size=1)
    store = SqlStore(database)
    reader = database.direct
    assert reader is not None
    try:
        op = await add(store, "alice")
        await store.get(op.id, "alice", NOW)  # the one connection is open
        lock = await _lock_operations(postgres_url)
        try:
            reading = asyncio.ensure_future(store.get(op.id, "alice", NOW))
            await _until_blocked(postgres_url)
            # Another read waits for the one connection meanwhile.
            queued = asyncio.ensure_future(store.get(op.id, "alice", NOW))
            await asyncio.sleep(0.05)
            reading.cancel()
            queued.cancel()
            for task in (reading, queued):
                with pytest.raises(asyncio.CancelledError):
                    await task
        finally:
            await lock.execute("ROLLBACK")
            await lock.close()
        # The same connection serves on: its cancelled statement is over,
        # and no read waits or holds a connection.
        for _ in range(3):
            assert (await store.get(op.id, "alice", NOW)).id == op.id
        assert (reader._open, len(reader._idle), len(reader._waiters)) == (1, 1, 0)
        both = await asyncio.gather(*(store.get(op.id, None, NOW) for _ in range(5)))
        assert {o.id for o in both} == {op.id}
        assert reader._open == 1
    finally:
        await store.close()
        await database.dispose()


async def test_a_database_that_goes_away_is_unavailable(own_cluster: ThrowawayCluster) -> None:
    url = own_cluster.url()
    upgrade(url)
    database = open_database(url)
    store = SqlStore(database)
    try:
        op = await add(store, "alice")
        assert (await store.get(op.id, "alice", NOW)).id == op.id
        await asyncio.to_thread(own_cluster.stop)
        for _ in range(2):  # the broken connection, then a refused connect
            with pytest.raises(Unavailable) as down:
                await store.get(op.id, "alice", NOW)
            assert down.value.reason == "DATABASE_UNAVAILABLE"
        await asyncio.to_thread(own_cluster.restart_after_stop)
        assert (await store.get(op.id, "alice", NOW)).id == op.id
    finally:
        await store.close()
        await database.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_clients_that_hang_up_mid_get_leave_the_server_whole(
    service: Service,
    jobs: job_service_pb2_grpc.JobServiceStub,
    operations: operations_pb2_grpc.OperationsStub,
    database_url: str,
) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty())
    request = operations_pb2.GetOperationRequest(name=op.name)
    await operations.GetOperation(request)
    reader = service.store._db.direct
    assert reader is not None
    lock = await _lock_operations(database_url)
    try:
        # Their deadlines pass while their reads wait on the lock: grpc
        # cancels the server's handlers mid-read.
        calls = [
            asyncio.ensure_future(operations.GetOperation(request, timeout=2)) for _ in range(3)
        ]
        await _until_blocked(database_url)
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                await call
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    finally:
        await lock.execute("ROLLBACK")
        await lock.close()
    answers = await asyncio.gather(*(operations.GetOperation(request) for _ in range(20)))
    assert {a.name for a in answers} == {op.name}
    assert reader._waiters == deque()
    # The service's own worker may hold a connection for a moment (a claim,
    # a heartbeat): every connection is back within a bounded wait, or one
    # was lost.
    for _ in range(200):
        if len(reader._idle) == reader._open:
            break
        await asyncio.sleep(0.01)
    assert len(reader._idle) == reader._open <= reader._size
