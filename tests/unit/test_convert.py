"""convert.metadata sets its fields in place on one message: it must give
exactly the message that building it from keyword arguments gives (the
plain way, kept here as the reference), for every shape of operation."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from google.protobuf import timestamp_pb2

from lrod.api import convert
from lrod.domain.errors import Code
from lrod.domain.operation import Operation, Payload, Progress, PublicError, poll_after
from lrod.domain.states import State
from lrod.domain.webhooks import Delivery, DeliveryState
from lrod.v1 import job_service_pb2, operation_metadata_pb2

NOW = datetime(2026, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def _reference(op: Operation, now: datetime) -> operation_metadata_pb2.OperationMetadata:
    queued_later = op.state.value == "QUEUED" and (op.attempt > 0 or op.run_after > now)
    return operation_metadata_pb2.OperationMetadata(
        state=op.state.value,
        job_type=op.job_type,
        progress=operation_metadata_pb2.Progress(
            completed=op.progress.completed, total=op.progress.total, stage=op.progress.stage
        ),
        attempt=op.attempt,
        max_attempts=op.max_attempts,
        create_time=convert.timestamp(op.create_time),
        start_time=convert.timestamp(op.start_time),
        update_time=convert.timestamp(op.update_time),
        end_time=convert.timestamp(op.end_time),
        next_attempt_time=convert.timestamp(op.run_after if queued_later else None),
        cancel_requested=op.cancel_requested,
        last_attempt_error=(
            convert.status(op.last_attempt_error) if op.last_attempt_error else None
        ),
        poll_after=convert.duration(poll_after(op, now)),
        labels=op.labels or None,
        priority=op.priority,
        expire_time=convert.timestamp(op.expire_time),
        webhook=convert.webhook(op),
    )


def _shapes() -> list[Operation]:
    base = Operation(
        "A" * 22, "me", "t", State.QUEUED, Payload("x", b""), NOW, NOW, NOW, max_attempts=3
    )
    error = PublicError(Code.UNAVAILABLE, "try again", "FLAKY", metadata={"k": "v"})
    delivery = Delivery(
        "A" * 22,
        "msg_1",
        "https://hooks.example.com/x",
        DeliveryState.PENDING,
        2,
        NOW + timedelta(seconds=30),
        last_status=503,
        last_error="503 Service Unavailable",
    )
    variants: list[dict[str, object]] = [
        {},
        {"run_after": NOW + timedelta(minutes=5)},  # queued for later
        {"run_after": NOW + timedelta(hours=2)},  # beyond the hint's cap
        {"attempt": 1, "last_attempt_error": error, "run_after": NOW + timedelta(seconds=3)},
        {"state": State.RUNNING, "attempt": 1, "start_time": NOW, "progress": Progress(2, 5)},
        {"state": State.RUNNING, "progress": Progress(0, 0, "copying"), "cancel_requested": True},
        {"labels": {"team": "data", "tier": "gold"}, "priority": -7},
        {"update_time": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)},
        {"create_time": datetime(2026, 1, 1)},  # naive: UTC
        {
            "state": State.SUCCEEDED,
            "end_time": NOW,
            "expire_time": NOW + timedelta(days=7),
            "result": Payload("type.googleapis.com/y", b"\x08\x01"),
        },
        {"state": State.FAILED, "end_time": NOW, "error": error, "last_attempt_error": error},
        {"notify_url": "https://hooks.example.com/x"},
        {"state": State.CANCELLED, "end_time": NOW, "notify_url": "https://hooks.example.com/x"},
        {
            "state": State.SUCCEEDED,
            "end_time": NOW,
            "notify_url": "https://hooks.example.com/x",
            "delivery": delivery,
        },
        {
            "state": State.SUCCEEDED,
            "end_time": NOW,
            "notify_url": "https://hooks.example.com/x",
            "delivery": replace(delivery, state=DeliveryState.DELIVERED, end_time=NOW),
        },
    ]
    return [replace(base, **fields) for fields in variants]  # type: ignore[arg-type]


def test_metadata_is_the_keyword_built_message_for_every_shape() -> None:
    for op, now in itertools.product(_shapes(), (NOW, NOW + timedelta(minutes=10))):
        built, reference = convert.metadata(op, now), _reference(op, now)
        assert built == reference, op
        assert built.SerializeToString(deterministic=True) == reference.SerializeToString(
            deterministic=True
        )
        assert built.HasField("progress")


def test_set_timestamp_is_from_datetime() -> None:
    for moment in (NOW, datetime(1969, 7, 20, 20, 17, 40, 5), datetime(2038, 1, 19, 3, 14, 8)):
        expected = timestamp_pb2.Timestamp()
        expected.FromDatetime(moment)
        assert convert.timestamp(moment) == expected


# What `operation` does not show (the rest are convert._SHOWN, the name, or
# read by _shape_of: notify_url, error, last_attempt_error, labels).
_NOT_SHOWN = {
    "id", "owner", "input", "timeout", "request_id", "dedupe_key", "lease_owner",
    "lease_expires_at", "version", "delivery", "notify_url", "error", "last_attempt_error",
    "labels",
}  # fmt: skip


def test_every_field_of_an_operation_is_shaped_or_not_shown() -> None:
    """A field added to Operation must be judged: part of the shared shape
    of a batch's answers (convert._SHOWN), or not in the answer."""
    fields = {f.name for f in dataclasses.fields(Operation)}
    assert set(convert._SHOWN) | _NOT_SHOWN == fields
    assert not set(convert._SHOWN) & _NOT_SHOWN


def test_a_batch_response_is_the_message_of_each_operation_converted() -> None:
    """Shapes repeated under other ids (shared), interleaved, one of each
    alone: the same bytes as the whole message built and serialized."""
    # (operation() needs a done one's result or error.)
    shapes = [op for op in _shapes() if not op.done or op.result or op.error]
    ops = [
        replace(op, id=f"{n:022d}") for n, op in enumerate(op for _ in range(3) for op in shapes)
    ]
    ops += [replace(ops[0], id="Z" * 22, labels={"b": "1", "a": "2"})]
    for now in (NOW, NOW + timedelta(minutes=10)):
        expected = job_service_pb2.BatchSubmitResponse(
            operations=[convert.operation(op, now) for op in ops]
        )
        assert convert.batch_response(ops, now) == expected.SerializeToString()
        assert (
            convert.batch_response(ops[:1], now)
            == job_service_pb2.BatchSubmitResponse(
                operations=[convert.operation(ops[0], now)]
            ).SerializeToString()
        )
    assert convert.batch_response([], NOW) == b""
