"""GetOperation answers an unchanged version from the bytes kept for it
(without building the operation from its row): the same answer as a fresh
read and conversion, a new version as soon as the row changes, and an
expired one as expired. Over gRPC on both databases."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.longrunning import operations_pb2

from lrod.api import convert
from lrod.app import Service
from lrod.auth.principal import ANONYMOUS
from lrod.domain.names import parse_operation_name
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2, operation_metadata_pb2
from tests.helpers import pack


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
