"""GetOperation, DeleteOperation, CancelOperation (AIP-151)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, empty_pb2, timestamp_pb2, wrappers_pb2
from google.rpc import code_pb2

from lrod.examples.v1 import examples_pb2 as ex
from tests.helpers import error_info, metadata, state_name, submit, violated_fields


async def _wait(operations, name: str, seconds: float = 5) -> operations_pb2.Operation:
    return await operations.WaitOperation(
        operations_pb2.WaitOperationRequest(
            name=name, timeout=duration_pb2.Duration(seconds=int(seconds))
        )
    )


def _later(seconds: int = 3600) -> timestamp_pb2.Timestamp:
    moment = timestamp_pb2.Timestamp()
    moment.FromDatetime(datetime.now(UTC) + timedelta(seconds=seconds))
    return moment


async def test_get_unknown_operation_is_not_found(operations) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await operations.GetOperation(
            operations_pb2.GetOperationRequest(name="operations/AAAAAAAAAAAAAAAAAAAAAA")
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(caught.value).reason == "OPERATION_NOT_FOUND"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "operations/",
        "operations/short",
        "jobs/AAAAAAAAAAAAAAAAAAAAAA",
        "operations/AAAAAAAAAAAAAAAAAAAA!!",
        "operations/" + "A" * 5000,
    ],
)
async def test_get_malformed_name_is_invalid_argument(operations, name) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        await operations.GetOperation(operations_pb2.GetOperationRequest(name=name))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "MALFORMED_NAME"
    assert violated_fields(caught.value) == ["name"]


async def test_get_returns_the_response_once_done(jobs, operations) -> None:
    op = await submit(jobs, "examples.sleep", ex.SleepJob(steps=2))
    await _wait(operations, op.name)
    got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert got.done
    assert got.WhichOneof("result") == "response"
    result = ex.SleepResult()
    assert got.response.Unpack(result)
    assert result.steps_done == 2
    meta = metadata(got)
    assert state_name(got) == "SUCCEEDED"
    assert meta.attempt == 1
    assert meta.HasField("end_time")
    assert meta.HasField("expire_time")
    assert not meta.HasField("poll_after")
    assert (meta.progress.completed, meta.progress.total) == (2, 2)


async def test_failed_job_shows_public_error_without_internals(jobs, operations) -> None:
    op = await submit(jobs, "test.crash", wrappers_pb2.StringValue(value="s3cret-db-password"))
    done = await _wait(operations, op.name)
    assert done.done
    assert done.WhichOneof("result") == "error"
    assert done.error.code == code_pb2.INTERNAL
    assert "s3cret" not in str(done)
    assert "Traceback" not in str(done)
    assert state_name(done) == "FAILED"


async def test_permanent_failure_carries_code_message_and_error_info(jobs, operations) -> None:
    op = await submit(jobs, "examples.flaky", ex.FlakyJob(permanent=True))
    done = await _wait(operations, op.name)
    assert done.error.code == code_pb2.FAILED_PRECONDITION
    assert done.error.message == "The flaky job was asked to fail permanently."
    from google.rpc import error_details_pb2

    info = error_details_pb2.ErrorInfo()
    assert done.error.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("PERMANENT_FAILURE_REQUESTED", "lrod")
    assert metadata(done).attempt == 1


async def test_flaky_job_succeeds_on_the_attempt_after_its_failures(jobs, operations) -> None:
    op = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=2))
    done = await _wait(operations, op.name)
    result = ex.FlakyResult()
    assert done.response.Unpack(result)
    assert result.attempts == 3
    assert metadata(done).last_attempt_error.code == code_pb2.UNAVAILABLE


async def test_delete_finished_operation_then_not_found(jobs, operations) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty())
    await _wait(operations, op.name)
    await operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=op.name))
    with pytest.raises(grpc.RpcError) as caught:
        await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_delete_unfinished_operation_is_refused(jobs, operations) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty(), schedule_time=_later())
    with pytest.raises(grpc.RpcError) as caught:
        await operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=op.name))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(caught.value).reason == "OPERATION_NOT_DONE"
    still = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert state_name(still) == "QUEUED"


async def test_cancel_queued_operation_is_cancelled_at_once(jobs, operations) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty(), schedule_time=_later())
    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
    got = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert got.done
    assert got.error.code == code_pb2.CANCELLED
    assert state_name(got) == "CANCELLED"
    assert metadata(got).cancel_requested


async def test_cancel_running_operation_reaches_the_handler(jobs, operations, gates) -> None:
    op = await submit(jobs, "test.block", wrappers_pb2.StringValue(value="c1"))
    await asyncio.wait_for(gates.started_event("c1").wait(), 5)
    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
    done = await _wait(operations, op.name)
    assert done.done
    assert done.error.code == code_pb2.CANCELLED
    assert gates.saw_cancel == ["c1"]
    assert metadata(done).attempt == 1


async def test_cancel_finished_operation_changes_nothing(jobs, operations) -> None:
    op = await submit(jobs, "test.noop", empty_pb2.Empty())
    before = await _wait(operations, op.name)
    assert state_name(before) == "SUCCEEDED"
    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=op.name))
    after = await operations.GetOperation(operations_pb2.GetOperationRequest(name=op.name))
    assert after == before


async def test_cancel_and_delete_unknown_are_not_found(operations) -> None:
    name = "operations/BBBBBBBBBBBBBBBBBBBBBB"
    for call in (
        operations.CancelOperation(operations_pb2.CancelOperationRequest(name=name)),
        operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=name)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_info(caught.value).reason == "OPERATION_NOT_FOUND"


async def test_export_report_writes_a_real_csv(jobs, operations, tmp_path) -> None:
    op = await submit(
        jobs, "examples.export_report", ex.ExportReportJob(range="2026-Q1", rows=2500)
    )
    done = await _wait(operations, op.name)
    result = ex.ExportReportResult()
    assert done.response.Unpack(result)
    assert result.row_count == 2500
    path = tmp_path / "exports" / result.uri.rsplit("/", 1)[-1]
    lines = path.read_text().splitlines()
    assert lines[0] == "row,range,amount"
    assert len(lines) == 2501
    assert result.size_bytes == path.stat().st_size
    assert (metadata(done).progress.completed, metadata(done).progress.total) == (2500, 2500)
