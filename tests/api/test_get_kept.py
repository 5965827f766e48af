"""GetOperation answers an unchanged version from the bytes kept for it
(without building the operation from its row): the same answer as a fresh
read and conversion, a new version as soon as the row changes, and an
expired one as expired; the answer's bytes are the conversion's, and a
change made through another server is seen by the next Get. Over gRPC on
both databases."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc

from lrod.api import convert
from lrod.app import Service, Settings
from lrod.auth.principal import ANONYMOUS
from lrod.domain.names import parse_operation_name
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2, operation_metadata_pb2
from tests.helpers import pack
from tests.jobs import Gates, build_registry


@pytest.fixture
async def idle(service: Service) -> Service:
    """No workers: an operation stays as submitted until cancelled."""
    if service.pool is not None:
        await service.pool.stop(0)
    return service


async def _get(operations, name: str) -> operations_pb2.Operation:
    return await operations.GetOperation(operations_pb2.GetOperationRequest(name=name))


def _state(op: operations_pb2.Operation) -> int:
    metadata = operation_metadata_pb2.OperationMetadata()
    op.metadata.Unpack(metadata)
    return int(metadata.state)


async def test_an_unchanged_version_answers_the_kept_bytes(jobs, operations, idle) -> None:
    submitted = await jobs.Submit(
        job_service_pb2.SubmitRequest(job_type="examples.sleep", input=pack(ex.SleepJob(steps=2)))
    )
    first = await _get(operations, submitted.name)
    op_id = parse_operation_name(submitted.name)
    stored = await idle.store.get(op_id, ANONYMOUS.owner, idle.manager.clock())
    # The second Get is the kept path: the same answer as the first, and as
    # a fresh conversion of the stored row.
    assert await _get(operations, submitted.name) == first
    assert first == convert.operation(stored, idle.manager.clock())

    await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=submitted.name))
    cancelled = await _get(operations, submitted.name)
    assert cancelled.done
    assert cancelled.error.code == grpc.StatusCode.CANCELLED.value[0]
    assert _state(cancelled) != _state(first)
    assert await _get(operations, submitted.name) == cancelled

    # Expired: NOT_FOUND with its reason, although its version is kept.
    now = idle.manager.clock()
    idle.manager.clock = lambda: now + timedelta(days=400)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _get(operations, submitted.name)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "expired" in (raised.value.details() or "").lower()


async def _get_bytes(channel: grpc.aio.Channel, name: str) -> bytes:
    """The answer as it came over the wire, not parsed."""
    call = channel.unary_unary(
        "/google.longrunning.Operations/GetOperation",
        request_serializer=operations_pb2.GetOperationRequest.SerializeToString,
        response_deserializer=None,
    )
    answer: bytes = await call(operations_pb2.GetOperationRequest(name=name))
    return answer


async def test_the_kept_answer_is_the_conversions_bytes(jobs, channel, idle) -> None:
    submitted = await jobs.Submit(
        job_service_pb2.SubmitRequest(job_type="examples.sleep", input=pack(ex.SleepJob(steps=2)))
    )
    first = await _get_bytes(channel, submitted.name)
    kept = await _get_bytes(channel, submitted.name)
    stored = await idle.store.get(
        parse_operation_name(submitted.name), ANONYMOUS.owner, idle.manager.clock()
    )
    reference = convert.operation(stored, idle.manager.clock()).SerializeToString()
    assert first == kept == reference


async def test_a_write_by_another_server_is_seen_by_the_next_get(
    jobs, operations, idle, database_url: str
) -> None:
    """Another server on the same database (as another process would be)
    changes an operation whose answer this one keeps: the next Get here
    answers the new version, without being told of the change."""
    submitted = await jobs.Submit(
        job_service_pb2.SubmitRequest(job_type="examples.sleep", input=pack(ex.SleepJob(steps=2)))
    )
    first = await _get(operations, submitted.name)
    assert await _get(operations, submitted.name) == first  # kept now
    other = Service(
        Settings(address="127.0.0.1:0", database_url=database_url, workers=None),
        build_registry(Gates()),
    )
    await other.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{other.port}") as elsewhere:
            stub = operations_pb2_grpc.OperationsStub(elsewhere)
            await stub.CancelOperation(operations_pb2.CancelOperationRequest(name=submitted.name))
            theirs = await _get(stub, submitted.name)
    finally:
        await other.stop(1.0)
    mine = await _get(operations, submitted.name)
    assert mine.done
    assert mine.error.code == grpc.StatusCode.CANCELLED.value[0]
    assert mine == theirs
