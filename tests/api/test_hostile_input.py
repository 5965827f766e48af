"""Regression tests for hostile input (issue "The edges"): each case gets a
clear status with ErrorInfo, never INTERNAL, UNKNOWN or UNAVAILABLE, and one
bad request never fails another."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import uuid

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import any_pb2, duration_pb2

from lrod.app import Service, Settings
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2
from tests.helpers import error_info, submit, violated_fields


async def test_thirty_submits_racing_one_with_a_nul_all_succeed(jobs) -> None:
    async def valid() -> object:
        return await submit(
            jobs, "examples.sleep", ex.SleepJob(steps=1), request_id=str(uuid.uuid4())
        )

    async def bad() -> object:
        return await submit(jobs, "examples.sleep", ex.SleepJob(steps=1), dedupe_key="a\x00b")

    calls = [valid() for _ in range(15)] + [bad()] + [valid() for _ in range(15)]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    refused = outcomes.pop(15)
    assert isinstance(refused, grpc.RpcError)
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(refused).reason == "INVALID_DEDUPE_KEY"
    assert all(isinstance(o, operations_pb2.Operation) for o in outcomes), outcomes


@pytest.mark.parametrize(
    "filter_",
    [
        'metadata.job_type = "a\x00b"',
        'labels.team = "a\x00"',
        'create_time > "0001-01-01T00:00:00+01:00"',
        'create_time < "9999-12-31T23:59:59-01:00"',
    ],
)
async def test_filters_the_database_cannot_take_are_invalid(operations, filter_) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await operations.ListOperations(operations_pb2.ListOperationsRequest(filter=filter_))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_FILTER"


def _metadata_bytes(error: grpc.RpcError) -> int:
    trailing = error.trailing_metadata() or ()
    return sum(len(k) + len(v) for k, v in trailing) + len(error.details() or "")


@pytest.mark.parametrize("seconds", [10**15, -(10**15), 315_576_000_001, 2**63 - 1], ids=str)
async def test_wait_timeout_outside_the_duration_range_is_invalid(operations, seconds) -> None:
    request = operations_pb2.WaitOperationRequest(
        name="operations/AAAAAAAAAAAAAAAAAAAAAA", timeout=duration_pb2.Duration(seconds=seconds)
    )
    with pytest.raises(grpc.RpcError) as caught:
        await operations.WaitOperation(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_TIMEOUT"


async def test_wait_with_a_negative_timeout_names_the_reason(operations) -> None:
    request = operations_pb2.WaitOperationRequest(
        name="operations/AAAAAAAAAAAAAAAAAAAAAA", timeout=duration_pb2.Duration(seconds=-1)
    )
    with pytest.raises(grpc.RpcError) as caught:
        await operations.WaitOperation(request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_TIMEOUT"
    assert violated_fields(caught.value) == ["timeout"]


async def test_list_with_a_bad_name_names_the_reason(operations) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await operations.ListOperations(operations_pb2.ListOperationsRequest(name="jobs"))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_COLLECTION"
    assert violated_fields(caught.value) == ["name"]


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({"k" * 1_000_000: "v"}, id="1MB-key"),
        pytest.param({f"Bad{i}": "v" for i in range(3000)}, id="3000-bad-keys"),
        pytest.param({"\u00e9" * 100_000: "\u00e9" * 100_000}, id="non-ascii"),
    ],
)
async def test_errors_stay_well_under_8kb(jobs, labels) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await submit(jobs, "examples.sleep", ex.SleepJob(steps=1), labels=labels)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason in ("INVALID_LABEL", "TOO_MANY_LABELS")
    assert _metadata_bytes(caught.value) < 6000
    assert len(violated_fields(caught.value)) <= 10


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            base64.urlsafe_b64encode(b'{"t":"2024-01-01T00:00:00","i":"x","b":""}').decode(),
            id="naive-time",
        ),
        pytest.param(
            base64.urlsafe_b64encode(b'{"t":"0001-01-01T00:00:00+01:00","i":"x","b":""}').decode(),
            id="year-1",
        ),
        pytest.param(base64.urlsafe_b64encode(b"[" * 50000).decode(), id="nested"),
        pytest.param("x" * 100_000, id="long"),
    ],
)
async def test_forged_page_tokens_are_invalid(operations, token) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await operations.ListOperations(operations_pb2.ListOperationsRequest(page_token=token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_PAGE_TOKEN"


async def test_a_page_token_works_on_another_process_of_the_database(
    service, operations, jobs
) -> None:
    for _ in range(3):
        await submit(jobs, "examples.sleep", ex.SleepJob(steps=1))
    first = await operations.ListOperations(operations_pb2.ListOperationsRequest(page_size=1))
    assert first.next_page_token
    # Another server on the same database (another process, or this one
    # restarted) shares the key kept in the database.
    other = Service(
        Settings(
            address="127.0.0.1:0",
            database_url=service.settings.database_url,
            workers=None,
        ),
        service.registry,
    )
    await other.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as channel:
            stub = operations_pb2_grpc.OperationsStub(channel)
            second = await stub.ListOperations(
                operations_pb2.ListOperationsRequest(page_size=1, page_token=first.next_page_token)
            )
    finally:
        await other.stop(0.5)
    assert len(second.operations) == 1
    assert second.operations[0].name != first.operations[0].name


async def test_callers_past_their_deadline_leave_no_traceback(jobs, operations, caplog) -> None:
    op = await submit(jobs, "examples.sleep", ex.SleepJob(steps=50))
    calls = []
    for i in range(40):
        deadline = 0.001 * (i % 10 + 1)
        calls += [
            operations.WaitOperation(
                operations_pb2.WaitOperationRequest(
                    name=op.name, timeout=duration_pb2.Duration(seconds=5)
                ),
                timeout=deadline,
            ),
            operations.GetOperation(
                operations_pb2.GetOperationRequest(name="operations/AAAAAAAAAAAAAAAAAAAAAA"),
                timeout=deadline,
            ),
            operations.ListOperations(
                operations_pb2.ListOperationsRequest(page_token="bad"), timeout=deadline
            ),
        ]
    with caplog.at_level(logging.DEBUG):
        await asyncio.gather(*calls, return_exceptions=True)
        await asyncio.sleep(0.3)  # let the abandoned store calls end
        gc.collect()
        await asyncio.sleep(0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize(
    ("job_type", "message", "field"),
    [
        ("examples.sleep", ex.SleepJob(steps=2147483647), "input.steps"),
        (
            "examples.sleep",
            ex.SleepJob(steps=1, duration=duration_pb2.Duration(seconds=10**9)),
            "input.duration",
        ),
        ("examples.flaky", ex.FlakyJob(fail_times=10**6), "input.fail_times"),
        ("examples.export_report", ex.ExportReportJob(range="../etc", rows=1), "input.range"),
        ("examples.export_report", ex.ExportReportJob(range="q1", rows=-1), "input.rows"),
    ],
)
async def test_a_job_types_own_validation_refuses_input_at_submit(
    jobs, operations, job_type, message, field
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await submit(jobs, job_type, message)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "INVALID_INPUT"
    assert violated_fields(caught.value) == [field]
    listed = await operations.ListOperations(operations_pb2.ListOperationsRequest())
    assert not listed.operations  # refused before a job existed


@pytest.mark.parametrize(
    "type_url",
    [
        "/lrod.examples.v1.SleepJob",
        "example.com/x/lrod.examples.v1.SleepJob",
        "lrod.examples.v1.SleepJob",
    ],
)
async def test_any_type_urls_with_any_prefix_are_accepted(jobs, type_url) -> None:
    packed = any_pb2.Any(type_url=type_url, value=ex.SleepJob(steps=1).SerializeToString())
    op = await jobs.Submit(job_service_pb2.SubmitRequest(job_type="examples.sleep", input=packed))
    assert op.name.startswith("operations/")


async def test_a_wrong_type_url_names_what_was_received(jobs) -> None:
    packed = any_pb2.Any(type_url="type.googleapis.com/lrod.examples.v1.FlakyJob")
    with pytest.raises(grpc.RpcError) as caught:
        await jobs.Submit(job_service_pb2.SubmitRequest(job_type="examples.sleep", input=packed))
    assert error_info(caught.value).reason == "WRONG_INPUT_TYPE"
    assert "lrod.examples.v1.FlakyJob" in caught.value.details()
