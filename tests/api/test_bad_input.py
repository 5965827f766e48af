"""Bad input anywhere gets a clear status with ErrorInfo: never INTERNAL or
UNKNOWN, never a traceback; reflection lists what the port serves."""

from __future__ import annotations

import grpc
import pytest
from google.longrunning import operations_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from lrod.v1 import job_service_pb2
from tests.helpers import error_info

GARBAGE = b"\xff\xff\xff\xff\x0f not protobuf"

UNARY = [
    "/lrod.v1.JobService/Submit",
    "/lrod.v1.JobService/ListJobTypes",
    "/google.longrunning.Operations/GetOperation",
    "/google.longrunning.Operations/ListOperations",
    "/google.longrunning.Operations/CancelOperation",
    "/google.longrunning.Operations/DeleteOperation",
    "/google.longrunning.Operations/WaitOperation",
    "/grpc.health.v1.Health/Check",
]


@pytest.mark.parametrize("method", UNARY)
async def test_undecodable_unary_request_is_invalid_argument(channel, method) -> None:
    call = channel.unary_unary(method)
    with pytest.raises(grpc.RpcError) as caught:
        await call(GARBAGE)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "UNDECODABLE_REQUEST"
    assert "DecodeError" not in caught.value.details()


@pytest.mark.parametrize(
    "method", ["/lrod.v1.JobService/WatchOperation", "/grpc.health.v1.Health/Watch"]
)
async def test_undecodable_streaming_request_is_invalid_argument(channel, method) -> None:
    stream = channel.unary_stream(method)(GARBAGE)
    with pytest.raises(grpc.RpcError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason == "UNDECODABLE_REQUEST"


async def test_undecodable_reflection_request_is_invalid_argument(channel) -> None:
    method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    stream = channel.stream_stream(method)(iter([GARBAGE]))
    with pytest.raises(grpc.RpcError) as caught:
        async for _ in stream:
            pass
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "request_",
    [
        operations_pb2.GetOperationRequest(name="operations/" + "\u00e9" * 22),
        operations_pb2.GetOperationRequest(name="operations/../../etc/passwd"),
        operations_pb2.GetOperationRequest(name="operations/'; DROP TABLE operations; --"),
        operations_pb2.ListOperationsRequest(filter='labels.x = "' + "a" * 5000 + '"'),
        operations_pb2.ListOperationsRequest(filter="\x00"),
        operations_pb2.ListOperationsRequest(page_token="%%%"),
        operations_pb2.ListOperationsRequest(page_size=-(2**31)),
    ],
)
async def test_hostile_fields_get_clear_errors(operations, request_) -> None:
    method = (
        operations.GetOperation
        if isinstance(request_, operations_pb2.GetOperationRequest)
        else operations.ListOperations
    )
    with pytest.raises(grpc.RpcError) as caught:
        await method(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(caught.value).reason
    assert "Traceback" not in caught.value.details()


async def test_hostile_submit_stores_nothing(jobs, operations) -> None:
    for request in (
        job_service_pb2.SubmitRequest(job_type="x" * 100_000),
        job_service_pb2.SubmitRequest(job_type="examples.sleep", labels={"": ""}),
        job_service_pb2.SubmitRequest(job_type="\x00"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            await jobs.Submit(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(caught.value.details()) < 2000
    listed = await operations.ListOperations(operations_pb2.ListOperationsRequest())
    assert list(listed.operations) == []


async def test_reflection_lists_every_service(channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for response in responses:
        names |= {s.name for s in response.list_services_response.service}
    assert {
        "lrod.v1.JobService",
        "google.longrunning.Operations",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names
