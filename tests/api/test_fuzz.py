"""A bounded fuzz of every RPC and of the HTTP door, on SQLite and
PostgreSQL: random bytes, mutated encodings of valid requests, and hostile
values in every field. Never INTERNAL, UNKNOWN or UNAVAILABLE; every error
carries an ErrorInfo and stays under 8 KB; nothing in the server log at
ERROR; the HTTP door answers no 5xx. Seeded, so a failure repeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from google.longrunning import operations_pb2
from google.protobuf import descriptor, duration_pb2, message_factory, timestamp_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lrod.app import Service
from lrod.examples.v1 import examples_pb2 as ex
from lrod.v1 import job_service_pb2
from tests.helpers import http_door, pack, submit

SEED = 1109
ROUNDS = 12  # per method and kind: about 650 gRPC calls per database
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE}
LIMIT = 8 * 1024

STRINGS = [
    "", "\x00", "a\x00b", "operations/", "operations/AAAAAAAAAAAAAAAAAAAAAA", "operations/../x",
    "é" * 3000, "\U0001f600" * 100, "x" * 70_000, "'; DROP TABLE operations; --", "%s%n",
    "examples.sleep", "type.googleapis.com/lrod.examples.v1.SleepJob", "/lrod.examples.v1.SleepJob",
    'create_time > "0001-01-01T00:00:00+01:00"', 'metadata.state = RUNNING AND labels.x = "\x00"',
    "done = true OR done = false", "[" * 5000, "123e4567-e89b-12d3-a456-426614174000",
]  # fmt: skip
INTS = [0, 1, -1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]


def _hostile(rng: random.Random, message: Message, depth: int = 0) -> Message:
    """`message` with hostile values in a random choice of its fields."""
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        # A value this field's type cannot hold in Python is skipped.
        with contextlib.suppress(ValueError, TypeError, OverflowError):
            _set(rng, message, field, depth)
    return message


def _set(
    rng: random.Random, message: Message, field: descriptor.FieldDescriptor, depth: int
) -> None:
    kind = field.type
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        target = getattr(message, field.name)
        for _ in range(rng.choice([1, 3, 100])):
            target[rng.choice(STRINGS)[:300]] = rng.choice(STRINGS)[:300]
        return
    if kind == descriptor.FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == "google.protobuf.Duration":
            value: Any = duration_pb2.Duration(
                seconds=rng.choice([10**15, -(10**15), 315_576_000_001, -1, 0, 5]),
                nanos=rng.choice([0, -1, 999_999_999, 2**31 - 1]),
            )
        elif name == "google.protobuf.Timestamp":
            seconds = rng.choice([-(2**62), 2**62, -62135596801, 0])
            value = timestamp_pb2.Timestamp(seconds=seconds)
        elif name == "google.protobuf.Any":
            value = pack(ex.SleepJob(steps=rng.choice(INTS)))
            value.type_url = rng.choice(STRINGS)[:500]
        elif depth < 2:
            value = _hostile(rng, message_factory.GetMessageClass(field.message_type)(), depth + 1)
        else:
            return
        if field.is_repeated:
            getattr(message, field.name).extend([value] * rng.choice([1, 2, 1001]))
        else:
            getattr(message, field.name).CopyFrom(value)
        return
    if kind == descriptor.FieldDescriptor.TYPE_STRING:
        value = rng.choice(STRINGS)
    elif kind == descriptor.FieldDescriptor.TYPE_BOOL:
        value = rng.choice([True, False])
    elif kind == descriptor.FieldDescriptor.TYPE_BYTES:
        value = rng.randbytes(rng.choice([0, 10, 1000]))
    elif kind == descriptor.FieldDescriptor.TYPE_ENUM:
        value = rng.choice([0, 1, 99, -5])
    else:
        value = rng.choice(INTS)
    if field.is_repeated:
        getattr(message, field.name).extend([value] * rng.choice([1, 50]))
    else:
        setattr(message, field.name, value)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    raw = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        where = rng.randrange(len(raw) + 1)
        action = rng.randrange(3)
        if action == 0 and raw:
            raw[min(where, len(raw) - 1)] = rng.randrange(256)
        elif action == 1:
            raw[where:where] = rng.randbytes(rng.randint(1, 8))
        elif raw:
            del raw[where : where + rng.randint(1, 4)]
    return bytes(raw)


METHODS: dict[str, tuple[str, Callable[[], Message]]] = {
    "/lrod.v1.JobService/Submit": ("unary", job_service_pb2.SubmitRequest),
    "/lrod.v1.JobService/BatchSubmit": ("unary", job_service_pb2.BatchSubmitRequest),
    "/lrod.v1.JobService/ListJobTypes": ("unary", job_service_pb2.ListJobTypesRequest),
    "/lrod.v1.JobService/WatchOperation": ("stream", job_service_pb2.WatchOperationRequest),
    "/google.longrunning.Operations/GetOperation": ("unary", operations_pb2.GetOperationRequest),
    "/google.longrunning.Operations/ListOperations": (
        "unary",
        operations_pb2.ListOperationsRequest,
    ),
    "/google.longrunning.Operations/CancelOperation": (
        "unary",
        operations_pb2.CancelOperationRequest,
    ),
    "/google.longrunning.Operations/DeleteOperation": (
        "unary",
        operations_pb2.DeleteOperationRequest,
    ),
    "/google.longrunning.Operations/WaitOperation": ("unary", operations_pb2.WaitOperationRequest),
}


def _valid(method: str, name: str) -> Message:
    request = METHODS[method][1]()
    if isinstance(request, job_service_pb2.SubmitRequest):
        request.job_type = "examples.sleep"
        request.input.CopyFrom(pack(ex.SleepJob(steps=1)))
        request.labels["team"] = "a"
    elif isinstance(request, job_service_pb2.BatchSubmitRequest):
        request.requests.add(job_type="examples.sleep", input=pack(ex.SleepJob(steps=1)))
    elif hasattr(request, "name"):
        request.name = name
    if isinstance(request, operations_pb2.ListOperationsRequest):
        request.name = ""
        request.filter = "done = false"
    return request


def _check(error: grpc.RpcError, what: str) -> None:
    code = error.code()
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        return  # our own short deadline on a call that waits
    assert code not in FORBIDDEN, f"{what}: {code} {error.details()}"
    size = len(error.details() or "") + sum(
        len(k) + len(v) for k, v in (error.trailing_metadata() or ())
    )
    assert size < LIMIT, f"{what}: an error of {size} bytes"
    status = rpc_status.from_call(error)
    assert status is not None, f"{what}: no status details"
    assert any(d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR) for d in status.details), what


async def _call(channel: grpc.aio.Channel, method: str, data: bytes) -> str:
    """The call's status code name, after checking its error."""
    kind = METHODS[method][0]
    try:
        if kind == "unary":
            await channel.unary_unary(method)(data, timeout=1.0)
        else:
            async for _ in channel.unary_stream(method)(data, timeout=0.5):
                pass
    except grpc.RpcError as error:
        _check(error, f"{method} {data[:60]!r}")
        return str(error.code().name)
    return "OK"


@pytest.fixture
async def existing(jobs) -> str:
    op = await submit(jobs, "examples.sleep", ex.SleepJob(steps=1))
    return op.name


async def test_fuzz_every_rpc(channel, existing, caplog) -> None:
    rng = random.Random(SEED)
    calls = []
    for method in METHODS:
        valid = _valid(method, existing).SerializeToString()
        for _ in range(ROUNDS):
            calls.append((method, rng.randbytes(rng.randint(0, 64))))
            calls.append((method, _mutate(rng, valid)))
            hostile = _hostile(rng, _valid(method, existing))
            calls.append((method, hostile.SerializeToString()))
    rng.shuffle(calls)
    codes: list[str] = []
    with caplog.at_level(logging.WARNING):
        for start in range(0, len(calls), 25):
            batch = calls[start : start + 25]
            codes += await asyncio.gather(*[_call(channel, m, d) for m, d in batch])
    assert len(codes) == len(METHODS) * ROUNDS * 3
    # Both refusals and successes happened: the fuzz reached the servicers.
    assert {"OK", "INVALID_ARGUMENT", "NOT_FOUND"} <= set(codes), set(codes)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


@pytest.fixture
async def http(service: Service) -> AsyncIterator[tuple[aiohttp.ClientSession, int]]:
    async with http_door(service.manager) as door, aiohttp.ClientSession() as session:
        yield session, door.port or 0


PATHS = [
    ("POST", "/v1/operations:submit"), ("POST", "/v1/operations:batchSubmit"),
    ("GET", "/v1/operations"), ("GET", "/v1/operations/{id}"),
    ("GET", "/v1/operations/{id}:result"), ("GET", "/v1/operations/{id}:watch"),
    ("POST", "/v1/operations/{id}:cancel"), ("POST", "/v1/operations/{id}:wait"),
    ("DELETE", "/v1/operations/{id}"), ("GET", "/v1/jobTypes"),
]  # fmt: skip
BODIES = [
    b"", b"{}", b"null", b"[]", b'{"jobType": 5}', b"\xff\xfe\x00", b"[" * 3000,
    b'{"jobType": "examples.sleep", "input": {"@type": "x/lrod.examples.v1.SleepJob"}}',
    b'{"timeout": "315576000001s"}', b'{"requests": [' + b"{}," * 50 + b"{}]}",
]  # fmt: skip
HEADERS = [
    {}, {"Content-Type": "application/json; charset=utf-16"}, {"Content-Encoding": "deflate"},
    {"Content-Encoding": "gzip"}, {"Idempotency-Key": "not-a-uuid"}, {"Idempotency-Key": "x" * 500},
]  # fmt: skip
QUERIES = [
    "", "?pageSize=%C2%B2", "?pageSize=" + "9" * 5000, "?pageToken=%5B%5B", "?filter=%00",
    "?filter=create_time%20%3C%20%229999-12-31T23:59:59-01:00%22", "?view=operation",
]  # fmt: skip


async def test_fuzz_the_http_door(http, existing, caplog) -> None:
    session, port = http
    rng = random.Random(SEED)
    ids = [existing.removeprefix("operations/"), "AAAAAAAAAAAAAAAAAAAAAA", "%00", "..", "é" * 30]
    with caplog.at_level(logging.WARNING):
        for _ in range(120):
            method, path = rng.choice(PATHS)
            url = f"http://127.0.0.1:{port}" + path.replace("{id}", rng.choice(ids))
            url += rng.choice(QUERIES)
            body = _mutate(rng, rng.choice(BODIES)) if rng.random() < 0.3 else rng.choice(BODIES)
            try:
                async with session.request(
                    method, url, data=body, headers=rng.choice(HEADERS),
                    allow_redirects=False, timeout=aiohttp.ClientTimeout(total=3),
                ) as response:  # fmt: skip
                    await response.read()
                    assert response.status < 500, (method, url, body[:80], response.status)
            except TimeoutError:
                pass  # a wait or watch that holds: not an error of the door
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
