"""BatchSubmit (AIP-233): one operation per request in order, all or none,
Submit's rules per request with violations naming the request, a limit per
call, and idempotency of a retried batch. Over gRPC on both databases, and
over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import json_format

from lrod.api import validation
from lrod.app import Service
from lrod.domain.submission import MAX_BATCH
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2
from tests.helpers import details, error_info, http_session, metadata, pack, submit, violated_fields


def _sleep(steps: int = 1, **fields: object) -> job_service_pb2.SubmitRequest:
    return job_service_pb2.SubmitRequest(
        job_type="examples.sleep", input=pack(ex.SleepJob(steps=steps)), **fields
    )


def _batch(*requests: job_service_pb2.SubmitRequest, request_id: str = "") -> object:
    return job_service_pb2.BatchSubmitRequest(requests=requests, request_id=request_id)


async def _stored(operations) -> list[str]:
    response = await operations.ListOperations(
        operations_pb2.ListOperationsRequest(name="operations", page_size=1000)
    )
    return sorted(op.name for op in response.operations)


@pytest.fixture
async def idle(service: Service) -> Service:
    """The service with its workers stopped: the batch stays QUEUED."""
    if service.pool is not None:
        await service.pool.stop(0)
    return service


async def test_one_operation_per_request_in_order(jobs, operations, idle) -> None:
    requests = [_sleep(labels={"n": str(i)}, priority=i - 2) for i in range(5)]
    response = await jobs.BatchSubmit(_batch(*requests))
    assert [metadata(op).labels["n"] for op in response.operations] == ["0", "1", "2", "3", "4"]
    assert [metadata(op).priority for op in response.operations] == [-2, -1, 0, 1, 2]
    assert len({op.name for op in response.operations}) == 5
    assert all(not op.done and metadata(op).state == 1 for op in response.operations)
    # Every one is stored, and reads back as returned.
    assert await _stored(operations) == sorted(op.name for op in response.operations)
    for op in response.operations:
        got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
        assert metadata(got).labels == metadata(op).labels


async def test_an_invalid_request_fails_the_batch_and_stores_none(jobs, operations, idle) -> None:
    bad = job_service_pb2.SubmitRequest(job_type="no.such.job", input=pack(ex.SleepJob()))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(_sleep(), _sleep(), bad, _sleep(priority=500)))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "UNKNOWN_JOB_TYPE"
    assert violated_fields(caught.value) == ["requests[2].job_type", "requests[3].priority"]
    assert "requests[2].job_type" in caught.value.details()
    assert await _stored(operations) == []


async def test_alike_requests_are_each_judged_by_their_own_request_id(
    jobs, operations, idle
) -> None:
    """Requests alike but for their request_id share their check: each
    request_id is still its own, and its violation names its request."""
    ids = [str(uuid.uuid4()), "not-a-uuid", "", str(uuid.uuid4()), "nope"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(*[_sleep(request_id=i) for i in ids]))
    assert error_info(caught.value).reason == "INVALID_REQUEST_ID"
    assert violated_fields(caught.value) == ["requests[1].request_id", "requests[4].request_id"]
    assert await _stored(operations) == []
    good = [ids[0], ids[2], ids[3]]
    response = await jobs.BatchSubmit(_batch(*[_sleep(request_id=i) for i in good]))
    names = [op.name for op in response.operations]
    assert len(set(names)) == 3
    # Each member stored under its own request_id: a Submit repeating one finds it.
    again = await submit(jobs, "examples.sleep", ex.SleepJob(steps=1), request_id=ids[3])
    assert again.name == names[2]


async def test_a_refused_member_rolls_the_whole_batch_back(jobs, operations, idle) -> None:
    taken = str(uuid.uuid4())
    first = await submit(jobs, "examples.sleep", ex.SleepJob(steps=1), request_id=taken)
    before = await _stored(operations)
    # Member 2 reuses a stored request_id for a different request.
    reuse = _sleep(steps=9, request_id=taken)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(_sleep(), _sleep(), reuse, _sleep()))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(caught.value)
    assert info.reason == "REQUEST_ID_REUSED"
    assert info.metadata["index"] == "2"
    assert caught.value.details().startswith("requests[2]: ")
    assert await _stored(operations) == before == [first.name]


async def test_a_batch_whose_insert_fails_stores_none(
    jobs, operations, idle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with nothing to look up (no request_id, no dedupe key) goes in
    as one INSERT of its own (one hop on SQLite, one statement on
    PostgreSQL): a row that cannot be stored (here an id given twice) stores
    none of the batch, and the call fails with no member created."""
    made = validation.new_operation_ids

    def twice(count: int) -> list[str]:
        ids = made(count)
        return [*ids[:-1], ids[0]]

    monkeypatch.setattr(validation, "new_operation_ids", twice)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(_sleep(), _sleep(steps=2), _sleep(steps=3)))
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert await _stored(operations) == []
    monkeypatch.setattr(validation, "new_operation_ids", made)
    response = await jobs.BatchSubmit(_batch(_sleep(), _sleep(steps=2)))
    assert await _stored(operations) == sorted(op.name for op in response.operations)


async def test_limits_per_call(jobs, operations, idle) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await jobs.BatchSubmit(_batch())
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(empty.value).reason == "MISSING_REQUESTS"
    assert violated_fields(empty.value) == ["requests"]

    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await jobs.BatchSubmit(_batch(*[_sleep()] * (MAX_BATCH + 1)))
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(too_many.value).reason == "TOO_MANY_REQUESTS"
    assert await _stored(operations) == []

    full = await jobs.BatchSubmit(_batch(*[_sleep()] * MAX_BATCH))
    assert len(full.operations) == MAX_BATCH
    assert len({op.name for op in full.operations}) == MAX_BATCH


async def test_many_invalid_requests_list_the_first_ten(jobs, idle) -> None:
    bad = _sleep(priority=1000)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(*[bad] * 50))
    assert violated_fields(caught.value) == [f"requests[{i}].priority" for i in range(10)]
    assert caught.value.details().endswith("(and 47 more)")  # beyond the 3 in the message
    assert "BadRequest" in details(caught.value)


async def test_a_retried_batch_returns_the_same_operations(jobs, operations, idle) -> None:
    batch_id = str(uuid.uuid4())
    own = str(uuid.uuid4())
    requests = [_sleep(steps=1), _sleep(steps=2, request_id=own), _sleep(steps=3)]
    first = await jobs.BatchSubmit(_batch(*requests, request_id=batch_id))
    again = await jobs.BatchSubmit(_batch(*requests, request_id=batch_id))
    assert [op.name for op in again.operations] == [op.name for op in first.operations]
    assert await _stored(operations) == sorted(op.name for op in first.operations)
    # A member's own request_id works as in Submit.
    repeat = await submit(jobs, "examples.sleep", ex.SleepJob(steps=2), request_id=own)
    assert repeat.name == first.operations[1].name

    # The batch's request_id reused for a different batch is refused, and
    # stores nothing.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(_sleep(steps=1), _sleep(steps=4), request_id=batch_id))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_info(caught.value).reason == "REQUEST_ID_REUSED"
    assert await _stored(operations) == sorted(op.name for op in first.operations)


async def test_repeats_inside_one_batch(jobs, idle) -> None:
    same = str(uuid.uuid4())
    response = await jobs.BatchSubmit(
        _batch(
            _sleep(request_id=same),
            _sleep(dedupe_key="k"),
            _sleep(request_id=same),
            _sleep(dedupe_key="k"),
        )
    )
    names = [op.name for op in response.operations]
    assert names[0] == names[2]
    assert names[1] == names[3]
    assert names[0] != names[1]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(
            _batch(_sleep(request_id=str(uuid.uuid4())), _sleep(steps=5, request_id=same))
        )
    assert error_info(caught.value).metadata["index"] == "1"


async def test_a_bad_batch_request_id_is_refused(jobs, idle) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await jobs.BatchSubmit(_batch(_sleep(), request_id="not-a-uuid"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == ["request_id"]


async def test_the_batch_runs(jobs, operations, service: Service) -> None:
    response = await jobs.BatchSubmit(_batch(*[_sleep(steps=0)] * 20))
    for op in response.operations:
        done = await operations.WaitOperation(
            operations_pb2.WaitOperationRequest(name=op.name, timeout={"seconds": 30})
        )
        while not done.done:
            done = await operations.WaitOperation(
                operations_pb2.WaitOperationRequest(name=op.name, timeout={"seconds": 30})
            )
        assert done.HasField("response")


@pytest.fixture
async def http(idle: Service) -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(idle.manager) as session:
        yield session


def _sleep_json(steps: int) -> dict:
    return {
        "jobType": "examples.sleep",
        "input": {"@type": "type.googleapis.com/lrod.examples.v1.SleepJob", "steps": steps},
    }


async def test_http_batch_submit(http) -> None:
    body = {"requests": [_sleep_json(1), _sleep_json(2)]}
    key = str(uuid.uuid4())
    accepted = await http.post(
        "/v1/operations:batchSubmit", json=body, headers={"Idempotency-Key": key}
    )
    assert accepted.status == 202
    names = [op["name"] for op in (await accepted.json())["operations"]]
    assert len(names) == 2
    again = await http.post(
        "/v1/operations:batchSubmit", json=body, headers={"Idempotency-Key": key}
    )
    assert [op["name"] for op in (await again.json())["operations"]] == names

    refused = await http.post(
        "/v1/operations:batchSubmit", json={"requests": [_sleep_json(1), {"jobType": ""}]}
    )
    assert refused.status == 400
    error = (await refused.json())["error"]
    assert error["status"] == "INVALID_ARGUMENT"
    fields = [
        v["field"]
        for d in error["details"]
        if d["@type"].endswith("BadRequest")
        for v in d["fieldViolations"]
    ]
    assert fields == ["requests[1].job_type"]


async def test_http_batch_answers_are_each_operations_json(http, idle, operations) -> None:
    """The answer's JSON is converted once per shape of operation: each
    member must be the JSON of the operation a GetOperation answers."""
    now = datetime.now(UTC)
    idle.manager.clock = lambda: now  # the poll hint of a later one moves with the clock
    later = (now + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    requests = [
        _sleep_json(1),
        _sleep_json(1),
        {**_sleep_json(1), "labels": {"team": "data"}},
        {**_sleep_json(1), "labels": {"team": "data"}},
        {**_sleep_json(1), "priority": 7, "scheduleTime": later},
        {**_sleep_json(1), "notification": {"url": "https://example.com/hook"}},
        _sleep_json(1),
    ]
    accepted = await http.post("/v1/operations:batchSubmit", json={"requests": requests})
    assert accepted.status == 202
    answered = (await accepted.json())["operations"]
    assert len({op["name"] for op in answered}) == len(requests)
    for op in answered:
        got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op["name"]))
        assert op == json_format.MessageToDict(got)
