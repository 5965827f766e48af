"""Submit: validation, idempotency (AIP-155), dedupe keys, durability."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2, empty_pb2, timestamp_pb2, wrappers_pb2

from lrod.app import Service
from lrod.examples.v1 import examples_pb2 as ex
from lrod.store.engine import open_database
from lrod.store.sql_store import SqlStore
from lrod.v1 import job_service_pb2
from tests.helpers import error_info, metadata, pack, state_name, submit, violated_fields


async def test_submit_returns_a_queued_operation_with_metadata(jobs, service: Service) -> None:
    service.pool and await service.pool.stop(0)  # keep it QUEUED
    op = await submit(
        jobs, "examples.sleep", ex.SleepJob(steps=2), labels={"team": "data"}, priority=7
    )
    assert op.name.startswith("operations/")
    assert len(op.name) == len("operations/") + 22
    assert not op.done
    assert not op.HasField("response")
    assert not op.HasField("error")
    meta = metadata(op)
    assert state_name(op) == "QUEUED"
    assert meta.job_type == "examples.sleep"
    assert meta.attempt == 0
    assert meta.max_attempts == 3
    assert meta.labels == {"team": "data"}
    assert meta.priority == 7
    assert meta.HasField("create_time")
    assert meta.poll_after.ToTimedelta().total_seconds() > 0


def test_submit_declares_operation_info() -> None:
    from google.longrunning import operations_pb2 as lro

    method = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].methods_by_name["Submit"]
    info = method.GetOptions().Extensions[lro.operation_info]
    assert info.metadata_type == "lrod.v1.OperationMetadata"


async def test_acknowledged_submit_is_committed(jobs, service: Service, database_url) -> None:
    service.pool and await service.pool.stop(0)
    op = await submit(jobs, "examples.sleep", ex.SleepJob(steps=1))
    # Read it through a separate engine: it is on disk, not only in memory.
    other = SqlStore(open_database(database_url))
    try:
        stored = await other.get(op.name.split("/")[1], "anonymous", service.manager.clock())
    finally:
        await other.close()
    assert stored.job_type == "examples.sleep"


@pytest.mark.parametrize(
    ("request_fields", "field", "reason"),
    [
        ({"job_type": "no.such.job", "input": pack(ex.SleepJob())}, "job_type", "UNKNOWN_JOB_TYPE"),
        ({"job_type": "", "input": pack(ex.SleepJob())}, "job_type", "MISSING_JOB_TYPE"),
        ({"job_type": "examples.sleep"}, "input", "MISSING_INPUT"),
        ({"job_type": "examples.sleep", "input": pack(ex.FlakyJob())}, "input", "WRONG_INPUT_TYPE"),
        (
            {
                "job_type": "examples.sleep",
                "input": any_pb2.Any(
                    type_url="type.googleapis.com/lrod.examples.v1.SleepJob", value=b"\xff\xff\xff"
                ),
            },
            "input",
            "UNDECODABLE_INPUT",
        ),
        (
            {"job_type": "examples.sleep", "input": pack(ex.SleepJob()), "request_id": "abc"},
            "request_id",
            "INVALID_REQUEST_ID",
        ),
        (
            {
                "job_type": "examples.sleep",
                "input": pack(ex.SleepJob()),
                "labels": {"Bad Key": "x"},
            },
            "labels['Bad Key']",
            "INVALID_LABEL",
        ),
        (
            {
                "job_type": "examples.sleep",
                "input": pack(ex.SleepJob()),
                "labels": {"env": "Not Allowed!"},
            },
            "labels['env']",
            "INVALID_LABEL",
        ),
        (
            {
                "job_type": "examples.sleep",
                "input": pack(ex.SleepJob()),
                "labels": {f"k{i}": "v" for i in range(65)},
            },
            "labels",
            "TOO_MANY_LABELS",
        ),
        (
            {"job_type": "examples.sleep", "input": pack(ex.SleepJob()), "priority": 101},
            "priority",
            "INVALID_PRIORITY",
        ),
        (
            {
                "job_type": "examples.sleep",
                "input": pack(ex.SleepJob()),
                "timeout": duration_pb2.Duration(seconds=-1),
            },
            "timeout",
            "INVALID_TIMEOUT",
        ),
        (
            {
                "job_type": "examples.flaky",
                "input": pack(ex.FlakyJob()),
                "timeout": duration_pb2.Duration(seconds=86400),
            },
            "timeout",
            "INVALID_TIMEOUT",
        ),
        (
            {"job_type": "examples.sleep", "input": pack(ex.SleepJob()), "dedupe_key": "k" * 257},
            "dedupe_key",
            "INVALID_DEDUPE_KEY",
        ),
        (
            {
                "job_type": "examples.sleep",
                "input": pack(ex.SleepJob()),
                "schedule_time": timestamp_pb2.Timestamp(seconds=253402300799),
            },
            "schedule_time",
            "INVALID_SCHEDULE_TIME",
        ),
    ],
)
async def test_submit_refuses_bad_input(jobs, request_fields, field, reason) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await jobs.Submit(job_service_pb2.SubmitRequest(**request_fields))
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == reason
    assert field in violated_fields(error)
    assert "Traceback" not in error.details()


async def test_bad_submit_stores_nothing(jobs, operations) -> None:
    with pytest.raises(grpc.RpcError):
        await submit(jobs, "examples.sleep", ex.SleepJob(), request_id="not-a-uuid")
    listed = await operations.ListOperations(operations_pb2.ListOperationsRequest())
    assert list(listed.operations) == []


async def test_repeated_request_id_returns_the_same_operation(jobs, operations) -> None:
    request_id = str(uuid.uuid4())
    first = await submit(jobs, "test.noop", empty_pb2.Empty(), request_id=request_id)
    again = await submit(jobs, "test.noop", empty_pb2.Empty(), request_id=request_id)
    assert again.name == first.name


async def test_fifty_racing_identical_submits_store_one(jobs, operations, service) -> None:
    service.pool and await service.pool.stop(0)
    request_id = str(uuid.uuid4())
    replies = await asyncio.gather(
        *[
            submit(
                jobs,
                "examples.sleep",
                ex.SleepJob(steps=3),
                request_id=request_id,
                labels={"race": "yes"},
            )
            for _ in range(50)
        ]
    )
    assert len({op.name for op in replies}) == 1
    listed = await operations.ListOperations(
        operations_pb2.ListOperationsRequest(filter='labels.race = "yes"', page_size=100)
    )
    assert [op.name for op in listed.operations] == [replies[0].name]


async def test_request_id_reused_for_another_request_is_refused(jobs) -> None:
    request_id = str(uuid.uuid4())
    await submit(jobs, "examples.sleep", ex.SleepJob(steps=1), request_id=request_id)
    with pytest.raises(grpc.RpcError) as caught:
        await submit(jobs, "examples.sleep", ex.SleepJob(steps=2), request_id=request_id)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(caught.value)
    assert info.reason == "REQUEST_ID_REUSED"
    assert info.metadata["request_id"] == request_id


async def test_dedupe_key_returns_the_active_operation(jobs, operations, gates) -> None:
    key = wrappers_pb2.StringValue(value="dedupe")
    first = await submit(jobs, "test.gate", key, dedupe_key="user-1:daily")
    same = await submit(jobs, "test.gate", key, dedupe_key="user-1:daily")
    other_key = await submit(jobs, "test.gate", key, dedupe_key="user-2:daily")
    other_type = await submit(jobs, "test.block", key, dedupe_key="user-1:daily")
    assert same.name == first.name
    assert other_key.name != first.name
    assert other_type.name != first.name
    gates.gate("dedupe").set()
    done = await operations.WaitOperation(
        operations_pb2.WaitOperationRequest(
            name=first.name, timeout=duration_pb2.Duration(seconds=5)
        )
    )
    assert done.done
    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=other_type.name))
    # Once the first is done, the key is free again.
    fresh = await submit(jobs, "test.gate", key, dedupe_key="user-1:daily")
    assert fresh.name != first.name
