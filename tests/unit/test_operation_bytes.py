"""convert.OperationBytes: the serialized Operation of each version, the same
bytes a fresh conversion gives, never kept while the clock changes them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from google.longrunning import operations_pb2

from lrod.api import convert
from lrod.domain.operation import Operation, Payload, Progress
from lrod.domain.states import State
from lrod.v1 import job_service_pb2

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _op(**fields: object) -> Operation:
    base = Operation(
        "A" * 22, "me", "t", State.RUNNING, Payload("x", b""), NOW, NOW, NOW, version=3
    )
    return replace(base, **fields)  # type: ignore[arg-type]


def test_the_bytes_are_a_fresh_conversions() -> None:
    op = _op(progress=Progress(2, 5, "copying"), labels={"a": "b"})
    kept = convert.OperationBytes()
    assert kept.operation(op, NOW) == convert.operation(op, NOW).SerializeToString()


def test_one_version_is_converted_once_and_a_new_one_again() -> None:
    kept = convert.OperationBytes()
    first = kept.operation(_op(), NOW)
    assert kept.operation(_op(), NOW) is first
    newer = _op(version=4, progress=Progress(3, 5))
    assert kept.operation(newer, NOW) == convert.operation(newer, NOW).SerializeToString()


def test_an_operation_queued_for_later_is_converted_at_each_read() -> None:
    later = _op(state=State.QUEUED, run_after=NOW + timedelta(seconds=30))
    kept = convert.OperationBytes()
    kept.operation(later, NOW)
    moved = NOW + timedelta(seconds=10)
    assert kept.operation(later, moved) == convert.operation(later, moved).SerializeToString()


def test_the_oldest_version_goes_first_when_full() -> None:
    kept = convert.OperationBytes(size=2)
    first = kept.operation(_op(id="a"), NOW)
    kept.operation(_op(id="b"), NOW)
    kept.operation(_op(id="c"), NOW)
    assert kept.operation(_op(id="a"), NOW) is not first


def test_a_watch_response_wraps_the_same_operation() -> None:
    op = _op(state=State.SUCCEEDED, result=Payload("type.googleapis.com/x", b"\x01" * 300))
    kept = convert.OperationBytes()
    response = job_service_pb2.WatchOperationResponse.FromString(kept.watch_response(op, NOW))
    assert response.operation == operations_pb2.Operation.FromString(kept.operation(op, NOW))
    assert response.operation.done


def test_a_done_operation_with_a_webhook_is_converted_at_each_read() -> None:
    # Its delivery (attempts, state) changes without a new version.
    op = _op(state=State.SUCCEEDED, result=Payload("x", b""), notify_url="https://example.test/")
    kept = convert.OperationBytes()
    first = kept.operation(op, NOW)
    assert kept.operation(op, NOW) is not first
    assert first == convert.operation(op, NOW).SerializeToString()


def test_known_gives_the_bytes_kept_for_a_version_only() -> None:
    kept = convert.OperationBytes()
    assert kept.known("A" * 22, 3) is None
    first = kept.operation(_op(), NOW)
    assert kept.known("A" * 22, 3) is first
    assert kept.known("A" * 22, 4) is None
    assert kept.known("B" * 22, 3) is None
    later = replace(_op(), state=State.QUEUED, run_after=NOW + timedelta(minutes=1))
    kept.operation(replace(later, version=9), NOW)
    assert kept.known("A" * 22, 9) is None  # never kept: it moves with the clock


def test_version_names_the_version_last_kept_while_its_bytes_are() -> None:
    kept = convert.OperationBytes(size=2)
    assert kept.version("a" * 22) is None
    kept.operation(_op(id="a" * 22), NOW)
    assert kept.version("a" * 22) == 3
    kept.operation(_op(id="a" * 22, version=4), NOW)
    assert kept.version("a" * 22) == 4
    kept.operation(_op(id="b" * 22), NOW)  # a's version 3 goes; 4 stays
    assert kept.version("a" * 22) == 4
    kept.operation(_op(id="c" * 22), NOW)  # a's version 4 goes
    assert kept.version("a" * 22) is None
    assert kept.version("c" * 22) == 3
