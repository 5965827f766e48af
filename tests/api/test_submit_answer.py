"""A created operation's answer is built from the request (not read back from
its row): it must be the very Operation a GetOperation of it answers, field
for field, for Submit and for every member of a BatchSubmit. Over gRPC on
both databases, with every optional field of a SubmitRequest set."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.longrunning import operations_pb2
from google.protobuf import duration_pb2, timestamp_pb2

from lrod.app import Service
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2
from tests.helpers import pack

# Microseconds that a float of seconds does not hold exactly.
NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


@pytest.fixture
async def frozen(service: Service) -> Service:
    """Workers stopped (the operations stay as created) and the clock fixed:
    the poll hint of an operation scheduled for later moves with it."""
    if service.pool is not None:
        await service.pool.stop(0)
    service.manager.clock = lambda: NOW
    return service


def _requests() -> list[job_service_pb2.SubmitRequest]:
    def sleep(**fields: object) -> job_service_pb2.SubmitRequest:
        return job_service_pb2.SubmitRequest(
            job_type="examples.sleep", input=pack(ex.SleepJob(steps=2)), **fields
        )

    later = timestamp_pb2.Timestamp()
    later.FromDatetime(NOW + timedelta(hours=2, microseconds=7))
    earlier = timestamp_pb2.Timestamp()
    earlier.FromDatetime(NOW - timedelta(minutes=5))
    return [
        sleep(),
        sleep(
            request_id=str(uuid.uuid4()),
            labels={"team": "data", "tier": "gold"},
            priority=-17,
            schedule_time=later,
            timeout=duration_pb2.Duration(seconds=3, nanos=123_456_789),
            dedupe_key="report-42",
            notification=job_service_pb2.NotificationTarget(url="https://example.com/hook"),
        ),
        sleep(
            schedule_time=earlier, timeout=duration_pb2.Duration(seconds=86_399, nanos=999_999_000)
        ),
    ]


async def _got(operations, name: str) -> operations_pb2.Operation:
    return await operations.GetOperation(operations_pb2.GetOperationRequest(name=name))


async def test_a_submit_answers_what_a_get_of_it_answers(jobs, operations, frozen) -> None:
    for request in _requests():
        answered = await jobs.Submit(request)
        assert answered == await _got(operations, answered.name)
        # A repeat (its request_id or dedupe key) answers the same again.
        if request.request_id or request.dedupe_key:
            assert await jobs.Submit(request) == answered


async def test_each_batch_member_answers_what_a_get_of_it_answers(jobs, operations, frozen) -> None:
    batch = job_service_pb2.BatchSubmitRequest(requests=_requests(), request_id=str(uuid.uuid4()))
    answered = (await jobs.BatchSubmit(batch)).operations
    assert len(answered) == 3
    for op in answered:
        assert op == await _got(operations, op.name)
    # A retried batch answers the same operations, as stored.
    assert list((await jobs.BatchSubmit(batch)).operations) == list(answered)


async def test_batch_answers_are_the_bytes_a_get_answers(channel, frozen) -> None:
    """BatchSubmit's answer is serialized with its members sharing one
    conversion per shape (convert.batch_response): each member's bytes must
    be the very bytes GetOperation answers for it. Read raw, undecoded."""
    alike = [
        job_service_pb2.SubmitRequest(
            job_type="examples.sleep", input=pack(ex.SleepJob(steps=2)), **fields
        )
        for fields in ({}, {}, {"labels": {"team": "data"}}, {"labels": {"team": "data"}}, {})
    ]
    batch = job_service_pb2.BatchSubmitRequest(requests=[*alike, *_requests(), *alike])
    batch_submit = channel.unary_unary(
        "/lrod.v1.JobService/BatchSubmit",
        request_serializer=job_service_pb2.BatchSubmitRequest.SerializeToString,
    )
    get = channel.unary_unary(
        "/google.longrunning.Operations/GetOperation",
        request_serializer=operations_pb2.GetOperationRequest.SerializeToString,
    )
    members = _members(await batch_submit(batch))
    assert len(members) == 2 * len(alike) + 3
    names = [operations_pb2.Operation.FromString(m).name for m in members]
    assert len(set(names)) == len(names)
    for name, member in zip(names, members, strict=True):
        assert member == await get(operations_pb2.GetOperationRequest(name=name))


def _members(raw: bytes) -> list[bytes]:
    """The bytes of each `operations` member (field 1, length-delimited) of
    a serialized BatchSubmitResponse, as they came."""
    members, at = [], 0
    while at < len(raw):
        assert raw[at] == 0x0A
        at, size, shift = at + 1, 0, 0
        while True:
            byte = raw[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        members.append(raw[at : at + size])
        at += size
    return members
