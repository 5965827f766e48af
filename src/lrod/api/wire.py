"""The answer to a Submit written straight in protobuf's wire format: a
google.longrunning.Operation around an lrod.v1.OperationMetadata, for an
operation as a create leaves it (queued, version 1, no attempt yet, no
labels, no webhook). Building the messages field by field (convert.operation) and
serializing them cost several times more, on every Submit.

`fresh_operation` answers None for any other operation: the caller converts
it as usual. The bytes are those of the message convert.operation builds, serialized
(tests/api/test_wire.py holds them to it byte for byte), so a Submit
answers what a GetOperation of the same version answers.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lrod.domain.operation import OPERATION_PREFIX, Operation, poll_after
from lrod.domain.states import State

_METADATA_TYPE_URL = b"type.googleapis.com/lrod.v1.OperationMetadata"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_SECONDS = 86_400
_ONE_SECOND = timedelta(seconds=1)
_UINT64 = (1 << 64) - 1

# Tags: (field number << 3) | wire type (0 varint, 2 length-delimited).
# Operation: name 1, metadata 2 (an Any: type_url 1, value 2).
_NAME, _METADATA, _ANY_TYPE_URL, _ANY_VALUE = b"\x0a", b"\x12", b"\x0a", b"\x12"
# OperationMetadata: state 1 (QUEUED = 1), job_type 2, progress 3 (present
# though empty), max_attempts 5, create_time 6, update_time 8,
# next_attempt_time 10, poll_after 13, priority 15; attempt 4 and
# cancel_requested 11 are zero: not written.
_QUEUED_AND_JOB_TYPE = b"\x08\x01\x12"
_EMPTY_PROGRESS = b"\x1a\x00"
_MAX_ATTEMPTS = b"\x28"
_CREATE_TIME, _UPDATE_TIME, _NEXT_ATTEMPT_TIME = b"\x32", b"\x42", b"\x52"
_POLL_AFTER = b"\x6a"
_POLL_IN_A_SECOND = b"\x6a\x02\x08\x01"
_PRIORITY = b"\x78"
# Timestamp and Duration: seconds 1, nanos 2.
_SECONDS, _NANOS = b"\x08", b"\x10"

_ANY_HEAD = _ANY_TYPE_URL + bytes([len(_METADATA_TYPE_URL)]) + _METADATA_TYPE_URL + _ANY_VALUE


_ONE_BYTE = [bytes((value,)) for value in range(0x80)]


def _varint(value: int) -> bytes:
    """A varint; a negative value as its 64-bit two's complement (int32 and
    int64 fields alike)."""
    if 0 <= value < 0x80:
        return _ONE_BYTE[value]
    value &= _UINT64
    out = []
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _delimited(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _seconds_nanos(seconds: int, nanos: int) -> bytes:
    body = b""
    if seconds:
        body = _SECONDS + _varint(seconds)
    if nanos:
        body += _NANOS + _varint(nanos)
    return body


def _timestamp(tag: bytes, moment: datetime) -> bytes:
    """As convert.set_timestamp (a naive datetime is UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    since = moment - _EPOCH
    body = _seconds_nanos(since.days * _DAY_SECONDS + since.seconds, since.microseconds * 1000)
    return tag + _ONE_BYTE[len(body)] + body  # at most 16 bytes


def _duration(tag: bytes, span: timedelta) -> bytes:
    """As Duration.FromTimedelta: seconds and nanos of one sign."""
    micros = (span.days * _DAY_SECONDS + span.seconds) * 1_000_000 + span.microseconds
    seconds, rest = divmod(abs(micros), 1_000_000)
    sign = -1 if micros < 0 else 1
    return _delimited(tag, _seconds_nanos(sign * seconds, sign * rest * 1000))


def _is_fresh(op: Operation) -> bool:
    """As a create stores it (a repeat of a Submit may be, too), with no
    webhook: the shape written here. Version 1 is the INSERT's (every write
    of a row bumps its version, as convert.OperationBytes relies on too), so
    no attempt, progress, cancellation or end has been written yet; a job
    handed off to a local worker is stored RUNNING at version 1. Labels are
    left to protobuf: its order of a map's entries is its own."""
    return op.version == 1 and op.state is State.QUEUED and op.notify_url is None and not op.labels


# The metadata's fields before the times and after them, by (job_type,
# max_attempts, priority): the same for every Submit of a kind of job.
_Parts = tuple[bytes, bytes]
_PARTS: dict[tuple[str, int, int], _Parts] = {}
_MAX_PARTS = 1024


def _parts(job_type: str, max_attempts: int, priority: int) -> _Parts:
    name = job_type.encode()
    head = _QUEUED_AND_JOB_TYPE + _varint(len(name)) + name + _EMPTY_PROGRESS
    if max_attempts:
        head += _MAX_ATTEMPTS + _varint(max_attempts)
    tail = _PRIORITY + _varint(priority) if priority else b""
    if len(_PARTS) < _MAX_PARTS:
        _PARTS[(job_type, max_attempts, priority)] = head, tail
    return head, tail


def fresh_operation(op: Operation, now: datetime) -> bytes | None:
    """The serialized google.longrunning.Operation of `op` as
    convert.operation(op, now) has it, or None when `op` is not as a create
    leaves it."""
    if not _is_fresh(op):
        return None
    head, tail = _PARTS.get((op.job_type, op.max_attempts, op.priority)) or _parts(
        op.job_type, op.max_attempts, op.priority
    )
    created = _timestamp(_CREATE_TIME, op.create_time)
    update = op.update_time
    meta = [head, created]
    if update == op.create_time:
        meta.append(_UPDATE_TIME + created[1:])
    elif update is not None:
        meta.append(_timestamp(_UPDATE_TIME, update))
    if op.run_after > now:
        meta.append(_timestamp(_NEXT_ATTEMPT_TIME, op.run_after))
        hint = poll_after(op, now)
        assert hint is not None  # not done
        meta.append(_POLL_IN_A_SECOND if hint == _ONE_SECOND else _duration(_POLL_AFTER, hint))
    else:
        meta.append(_POLL_IN_A_SECOND)
    meta.append(tail)
    metadata = b"".join(meta)
    metadata_length = _varint(len(metadata))
    name = (OPERATION_PREFIX + op.id).encode()
    return b"".join(
        (
            _NAME,
            _varint(len(name)),
            name,
            _METADATA,
            _varint(len(_ANY_HEAD) + len(metadata_length) + len(metadata)),
            _ANY_HEAD,
            metadata_length,
            metadata,
        )
    )
