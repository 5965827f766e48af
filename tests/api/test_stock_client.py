"""A stock google.longrunning client (google-api-core) works unmodified."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.api_core import exceptions, operation, operations_v1
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2, empty_pb2, wrappers_pb2
from google.rpc import error_details_pb2

from lrod.app import Service
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2, job_service_pb2_grpc, operation_metadata_pb2
from tests.helpers import pack


def _client(
    port: int,
) -> tuple[grpc.Channel, job_service_pb2_grpc.JobServiceStub, operations_v1.OperationsClient]:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return (
        channel,
        job_service_pb2_grpc.JobServiceStub(channel),
        operations_v1.OperationsClient(channel),
    )


def _follow_sleep_job(port: int) -> tuple[ex.SleepResult, operation_metadata_pb2.OperationMetadata]:
    channel, jobs, client = _client(port)
    with channel:
        raw = jobs.Submit(
            job_service_pb2.SubmitRequest(
                job_type="examples.sleep",
                input=pack(ex.SleepJob(duration=duration_pb2.Duration(nanos=200_000_000), steps=2)),
                request_id=str(uuid.uuid4()),
            )
        )
        future = operation.from_gapic(
            raw, client, ex.SleepResult, metadata_type=operation_metadata_pb2.OperationMetadata
        )
        result = future.result(timeout=20)
        assert future.done()
        listed = list(client.list_operations("operations", ""))
        assert raw.name in [op.name for op in listed]
        return result, future.metadata


async def test_google_api_core_follows_an_operation_to_its_result(service: Service) -> None:
    result, meta = await asyncio.to_thread(_follow_sleep_job, service.port)
    assert result.steps_done == 2
    assert operation_metadata_pb2.OperationMetadata.State.Name(meta.state) == "SUCCEEDED"


def _failing(port: int) -> None:
    channel, jobs, client = _client(port)
    with channel:
        raw = jobs.Submit(
            job_service_pb2.SubmitRequest(
                job_type="examples.flaky", input=pack(ex.FlakyJob(permanent=True))
            )
        )
        future = operation.from_gapic(raw, client, ex.FlakyResult)
        future.result(timeout=20)


async def test_google_api_core_raises_the_operation_error(service: Service) -> None:
    with pytest.raises(exceptions.FailedPrecondition) as caught:
        await asyncio.to_thread(_failing, service.port)
    assert "asked to fail permanently" in caught.value.message
    # api-core hands over the google.rpc.Status; its ErrorInfo is ours.
    status = caught.value.errors[0]
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "PERMANENT_FAILURE_REQUESTED"


def _cancel(port: int, gates_started) -> tuple[bool, operations_pb2.Operation]:
    channel, jobs, client = _client(port)
    with channel:
        raw = jobs.Submit(
            job_service_pb2.SubmitRequest(
                job_type="test.block", input=pack(wrappers_pb2.StringValue(value="stock"))
            )
        )
        future = operation.from_gapic(raw, client, empty_pb2.Empty)
        gates_started()
        future.cancel()
        with pytest.raises(exceptions.GoogleAPICallError):
            future.result(timeout=20)
        return future.cancelled(), client.get_operation(raw.name)


async def test_google_api_core_cancels(service: Service, gates) -> None:
    loop = asyncio.get_running_loop()

    def started() -> None:
        asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(gates.started_event("stock").wait(), 10), loop
        ).result()

    cancelled, final = await asyncio.to_thread(_cancel, service.port, started)
    assert cancelled
    assert final.done
    assert final.error.code == 1


def _delete_and_wait(port: int) -> None:
    channel, jobs, client = _client(port)
    with channel:
        raw = jobs.Submit(
            job_service_pb2.SubmitRequest(job_type="test.noop", input=pack(empty_pb2.Empty()))
        )
        # api-core has no wait_operation; the generated stub of the same service does.
        done = operations_pb2_grpc.OperationsStub(channel).WaitOperation(
            operations_pb2.WaitOperationRequest(
                name=raw.name, timeout=duration_pb2.Duration(seconds=5)
            )
        )
        assert done.done
        client.delete_operation(raw.name)
        with pytest.raises(exceptions.NotFound):
            client.get_operation(raw.name)


async def test_google_api_core_wait_and_delete(service: Service) -> None:
    await asyncio.to_thread(_delete_and_wait, service.port)
