"""Regression tests for hostile input (issue "The edges"): each case gets a
clear status with ErrorInfo, never INTERNAL, UNKNOWN or UNAVAILABLE, and one
bad request never fails another."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.longrunning import operations_pb2

from lrod.examples.v1 import examples_pb2 as ex
from tests.helpers import error_info, submit


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
