"""ListOperations: AIP-158 pagination and the AIP-160 filter subset."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2
from sqlalchemy import event

from lrod.app import Service
from lrod.domain.paging import DEFAULT_PAGE_SIZE
from lrod.examples.v1 import examples_pb2 as ex
from tests.helpers import error_info, metadata, state_name, submit


def _later() -> timestamp_pb2.Timestamp:
    moment = timestamp_pb2.Timestamp()
    moment.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    return moment


async def _list(operations, **fields) -> operations_pb2.ListOperationsResponse:
    return await operations.ListOperations(operations_pb2.ListOperationsRequest(**fields))


async def _queued(jobs, count: int, **fields) -> list[str]:
    return [
        (await submit(jobs, "test.noop", empty_pb2.Empty(), schedule_time=_later(), **fields)).name
        for _ in range(count)
    ]


async def test_pages_cover_everything_once_newest_first(jobs, operations, service: Service) -> None:
    names = await _queued(jobs, 7)
    seen: list[str] = []
    token = ""
    statements: list[object] = []

    def record(conn, clauseelement, *args) -> None:
        statements.append(clauseelement)

    event.listen(service.store._db.read_engine, "before_execute", record)
    try:
        for _ in range(10):
            page = await _list(operations, page_size=3, page_token=token)
            assert len(page.operations) <= 3
            seen += [op.name for op in page.operations]
            token = page.next_page_token
            if not token:
                break
    finally:
        event.remove(service.store._db.read_engine, "before_execute", record)
    assert seen == list(reversed(names))
    assert statements
    # Keyset pagination: no query skips rows with OFFSET.
    assert all(getattr(s, "_offset_clause", None) is None for s in statements)
    assert any(getattr(s, "_limit_clause", None) is not None for s in statements)


async def test_default_and_maximum_page_size(jobs, operations) -> None:
    await _queued(jobs, DEFAULT_PAGE_SIZE + 2)
    default = await _list(operations)
    assert len(default.operations) == DEFAULT_PAGE_SIZE
    assert default.next_page_token
    huge = await _list(operations, page_size=1_000_000)
    assert len(huge.operations) == DEFAULT_PAGE_SIZE + 2
    assert huge.next_page_token == ""


async def test_negative_page_size_is_refused(operations) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await _list(operations, page_size=-1)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_PAGE_SIZE"


async def test_page_token_is_bound_to_its_filter(jobs, operations) -> None:
    await _queued(jobs, 3, labels={"team": "a"})
    page = await _list(operations, page_size=1, filter='labels.team = "a"')
    assert page.next_page_token
    with pytest.raises(grpc.RpcError) as caught:
        await _list(operations, page_size=1, filter="done = false", page_token=page.next_page_token)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"
    with pytest.raises(grpc.RpcError) as caught:
        await _list(operations, page_token="bm90IGEgdG9rZW4")
    assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"


async def test_filters(jobs, operations) -> None:
    queued = await _queued(jobs, 2, labels={"team": "a"})
    other = await _queued(jobs, 1, labels={"team": "b"})
    done_op = await submit(jobs, "examples.flaky", ex.FlakyJob(), labels={"team": "a"})
    await operations.WaitOperation(
        operations_pb2.WaitOperationRequest(
            name=done_op.name, timeout=duration_pb2.Duration(seconds=5)
        )
    )

    async def names(text: str) -> set[str]:
        page = await _list(operations, filter=text, page_size=100)
        return {op.name for op in page.operations}

    assert await names("done = true") == {done_op.name}
    assert await names("done = false") == set(queued + other)
    assert await names("metadata.state = QUEUED") == set(queued + other)
    assert await names("metadata.state != QUEUED") == {done_op.name}
    assert await names('metadata.job_type = "examples.flaky"') == {done_op.name}
    assert await names('labels.team = "a"') == set(queued) | {done_op.name}
    assert await names('metadata.labels.team = "a" AND done = false') == set(queued)
    assert await names('labels.team != "a"') == set(other)
    first = await operations.GetOperation(operations_pb2.GetOperationRequest(name=queued[0]))
    created = metadata(first).create_time.ToJsonString()
    assert await names(f'create_time < "{created}"') == set()
    assert queued[0] in await names(f'create_time >= "{created}"')
    assert await names('create_time > "2999-01-01T00:00:00Z"') == set()
    assert state_name(first) == "QUEUED"


@pytest.mark.parametrize(
    "text",
    [
        "owner = x",
        "done = maybe",
        "metadata.state = SLEEPING",
        "done = true OR done = false",
        "(done = true)",
        "labels:team",
        "done >",
        "create_time > yesterday",
        'metadata.job_type > "a"',
        "done = true AND",
    ],
)
async def test_bad_filters_are_refused(operations, text) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await _list(operations, filter=text)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_FILTER"


async def test_unknown_collection_is_refused(operations) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await _list(operations, name="jobs")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
