"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import grpc
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lrod.http.server import HttpFrontDoor
from lrod.manager import OperationManager
from lrod.v1 import job_service_pb2, job_service_pb2_grpc, operation_metadata_pb2

State = operation_metadata_pb2.OperationMetadata.State


async def in_turn(call: Callable[[], Awaitable[Any]]) -> Any:
    """`call()` made when this coroutine runs: SqlStore.claim queues its ask
    in the worker writes at the call, so a claim among an `asyncio.gather`'s
    writes is queued in the gather's order this way (as the pool's claim
    after the finishes its freed slots queued), not before them all."""
    return await call()


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


async def submit(
    jobs: job_service_pb2_grpc.JobServiceStub, job_type: str, message: Message, **fields: Any
) -> operations_pb2.Operation:
    request = job_service_pb2.SubmitRequest(job_type=job_type, input=pack(message), **fields)
    return await jobs.Submit(request)


def metadata(op: operations_pb2.Operation) -> operation_metadata_pb2.OperationMetadata:
    result = operation_metadata_pb2.OperationMetadata()
    assert op.metadata.Unpack(result)
    return result


def state_name(op: operations_pb2.Operation) -> str:
    return State.Name(metadata(op).state)


def details(error: grpc.RpcError) -> dict[str, Message]:
    """The google.rpc.Status details of an RPC error, by message name."""
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no grpc-status-details-bin"
    assert status.code == error.code().value[0]
    assert status.message == error.details()
    found: dict[str, Message] = {}
    for detail in status.details:
        for kind in (
            error_details_pb2.ErrorInfo,
            error_details_pb2.BadRequest,
            error_details_pb2.RetryInfo,
        ):
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    return found


def error_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    info = details(error).get("ErrorInfo")
    assert isinstance(info, error_details_pb2.ErrorInfo), "every error carries ErrorInfo"
    assert info.domain == "lrod"
    return info


def violated_fields(error: grpc.RpcError) -> list[str]:
    bad = details(error).get("BadRequest")
    assert isinstance(bad, error_details_pb2.BadRequest)
    return [v.field for v in bad.field_violations]


@contextlib.asynccontextmanager
async def http_door(manager: OperationManager, **options: Any) -> AsyncIterator[HttpFrontDoor]:
    """The HTTP door (HttpFrontDoor's `options`) on 127.0.0.1 and a free
    port, started; stopped on exit."""
    door = HttpFrontDoor(manager, "127.0.0.1:0", **options)
    await door.start()
    try:
        yield door
    finally:
        await door.stop()


@contextlib.asynccontextmanager
async def http_session(
    manager: OperationManager, **options: Any
) -> AsyncIterator[aiohttp.ClientSession]:
    """A client session on a started HTTP door (http_door), its paths relative."""
    async with (
        http_door(manager, **options) as door,
        aiohttp.ClientSession(f"http://127.0.0.1:{door.port}") as session,
    ):
        yield session
