"""Domain objects to and from protobuf messages: the only module of the api
that knows both."""

from __future__ import annotations

import functools
import operator
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from datetime import UTC, datetime, timedelta

from google.longrunning import operations_pb2
from google.protobuf import any_pb2, duration_pb2, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2

from lrod.domain.operation import Operation, PublicError, poll_after
from lrod.domain.webhooks import DeliveryState, webhook_id
from lrod.jobs.registry import JobType
from lrod.v1 import job_service_pb2, operation_metadata_pb2

Metadata = operation_metadata_pb2.OperationMetadata


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAY_SECONDS = 86_400


def timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    """As Timestamp.FromDatetime (a naive datetime is UTC), in a third of
    its time: it is called several times for every operation answered."""
    if moment is None:
        return None
    result = timestamp_pb2.Timestamp()
    set_timestamp(result, moment)
    return result


def set_timestamp(field: timestamp_pb2.Timestamp, moment: datetime) -> None:
    """`field` (a message's Timestamp field, set in place: no Timestamp made
    and copied in) to `moment`, as Timestamp.FromDatetime."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    since = moment - _EPOCH
    field.seconds = since.days * _DAY_SECONDS + since.seconds
    field.nanos = since.microseconds * 1000


def duration(span: timedelta | None) -> duration_pb2.Duration | None:
    if span is None:
        return None
    value = duration_pb2.Duration()
    value.FromTimedelta(span)
    return value


def status(error: PublicError) -> status_pb2.Status:
    result = status_pb2.Status(code=int(error.code), message=error.message)
    result.details.add().Pack(
        error_details_pb2.ErrorInfo(
            reason=error.reason, domain=error.domain, metadata=dict(error.metadata)
        )
    )
    return result


_POLL_SOON = timedelta(seconds=1)


def metadata(op: Operation, now: datetime) -> Metadata:
    # Fields set in place on the one message (no sub-message made and then
    # copied in, as keyword arguments would): a conversion per answer.
    result = Metadata(
        state=op.state.value,
        job_type=op.job_type,
        attempt=op.attempt,
        max_attempts=op.max_attempts,
        cancel_requested=op.cancel_requested,
        priority=op.priority,
    )
    progress, shown = op.progress, result.progress
    shown.SetInParent()  # present even when all zero, as it always was
    if progress.completed:
        shown.completed = progress.completed
    if progress.total:
        shown.total = progress.total
    if progress.stage:
        shown.stage = progress.stage
    set_timestamp(result.create_time, op.create_time)
    if op.start_time is not None:
        set_timestamp(result.start_time, op.start_time)
    if op.update_time is not None:
        set_timestamp(result.update_time, op.update_time)
    if op.end_time is not None:
        set_timestamp(result.end_time, op.end_time)
    if op.expire_time is not None:
        set_timestamp(result.expire_time, op.expire_time)
    if op.state.value == "QUEUED" and (op.attempt > 0 or op.run_after > now):
        set_timestamp(result.next_attempt_time, op.run_after)
    if op.last_attempt_error:
        result.last_attempt_error.CopyFrom(status(op.last_attempt_error))
    hint = poll_after(op, now)
    if hint == _POLL_SOON:
        result.poll_after.seconds = 1
    elif hint is not None:
        result.poll_after.FromTimedelta(hint)
    if op.labels:
        result.labels.update(op.labels)
    delivery = webhook(op)
    if delivery is not None:
        result.webhook.CopyFrom(delivery)
    return result


_DELIVERY_STATES = {
    DeliveryState.PENDING: operation_metadata_pb2.WebhookDelivery.STATE_PENDING,
    DeliveryState.DELIVERED: operation_metadata_pb2.WebhookDelivery.STATE_DELIVERED,
    DeliveryState.FAILED: operation_metadata_pb2.WebhookDelivery.STATE_FAILED,
}


def webhook(op: Operation) -> operation_metadata_pb2.WebhookDelivery | None:
    if op.notify_url is None:
        return None
    d = op.delivery
    if d is None:
        # Not read with the operation: not done yet, or (a done one) its
        # outbox row was written with the terminal state and is pending.
        waiting = operation_metadata_pb2.WebhookDelivery.STATE_WAITING
        return operation_metadata_pb2.WebhookDelivery(
            url=op.notify_url,
            state=_DELIVERY_STATES[DeliveryState.PENDING] if op.done else waiting,
            webhook_id=webhook_id(op.id),
            next_attempt_time=timestamp(op.end_time),
        )
    return operation_metadata_pb2.WebhookDelivery(
        url=d.url,
        state=_DELIVERY_STATES[d.state],
        webhook_id=d.webhook_id,
        attempts=d.attempts,
        last_http_status=d.last_status or 0,
        last_error=d.last_error or "",
        next_attempt_time=timestamp(
            d.next_attempt_time if d.state is DeliveryState.PENDING else None
        ),
        end_time=timestamp(d.end_time),
    )


def operation(op: Operation, now: datetime) -> operations_pb2.Operation:
    result = operations_pb2.Operation(name=op.name, done=op.done)
    result.metadata.Pack(metadata(op, now))
    if op.done:
        if op.result is not None and op.error is None:
            result.response.CopyFrom(
                any_pb2.Any(type_url=op.result.type_url, value=op.result.value)
            )
        else:
            assert op.error is not None, f"{op.name} is done with neither result nor error"
            result.error.CopyFrom(status(op.error))
    return result


# What `operation` reads of an Operation besides its name (see `metadata`,
# `webhook` and `operation`; tests/api/test_convert.py holds every field of
# Operation to this list or to _NOT_SHOWN): operations equal in these (and
# in their labels) convert to the same bytes after their name.
_SHOWN = (
    "state", "job_type", "attempt", "max_attempts", "cancel_requested", "priority", "progress",
    "create_time", "start_time", "update_time", "end_time", "expire_time", "run_after",
    "result",
)  # fmt: skip
_shape = operator.attrgetter(*_SHOWN)


def shape_of(op: Operation) -> Hashable | None:
    """The key of the operations whose conversion differs from `op`'s only
    in their name, or None for one converted alone: a webhook shows its id
    (from the operation's), and errors hold unhashable metadata."""
    if op.notify_url is not None or op.error is not None or op.last_attempt_error is not None:
        return None
    labels = op.labels
    return (_shape(op), tuple(labels.items())) if labels else _shape(op)


def _name_field(name: str) -> bytes:
    """Operation.name (field 1, length-delimited) serialized."""
    data = name.encode()
    return _OPERATION_FIELD + _size(len(data)) + data


def batch_response(ops: Sequence[Operation], now: datetime) -> bytes:
    """A serialized lrod.v1.BatchSubmitResponse of `ops`, byte for byte what
    BatchSubmitResponse(operations=[operation(op, now) ...]) serializes to
    (the servers' response serializer passes bytes through).

    The members of a batch mostly differ only in their ids: the first of
    each shape is converted, and the rest reuse its bytes after the name
    (field 1, serialized first). Each operation is one `operations` field
    (1, length-delimited)."""
    after_name: dict[Hashable, bytes | None] = {}
    parts: list[bytes] = []
    for op in ops:
        shape = shape_of(op)
        rest = after_name.get(shape) if shape is not None else None
        if rest is not None:
            data = _name_field(op.name) + rest
        else:
            data = operation(op, now).SerializeToString()
            if shape is not None and shape not in after_name:
                name = _name_field(op.name)
                # Only split where the name leads (as upb writes it).
                after_name[shape] = data[len(name) :] if data.startswith(name) else None
        parts += (_OPERATION_FIELD, _size(len(data)), data)
    return b"".join(parts)


class OperationBytes:
    """Each operation's serialized google.longrunning.Operation, kept per
    version: a Get, Wait or a watcher's wake-up of a version already
    converted answers these bytes (the servers' response serializer passes
    bytes through) instead of converting and serializing again.

    Only what depends on the row alone is kept: an operation queued for
    later (run_after ahead of `now`) shows a poll hint and next attempt time
    that move with the clock, and a done one with a webhook shows its
    delivery, which moves without a new version; those are converted each
    time. Otherwise the message of a version never changes: every write of
    an operation's row bumps its version."""

    def __init__(self, size: int = 20_000) -> None:
        self._size = size
        self._kept: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        # The version last kept of each operation with bytes kept.
        self._versions: dict[str, int] = {}

    def known(self, op_id: str, version: int) -> bytes | None:
        """The bytes kept for this version of an operation, if any (the
        `kept` of OperationStore.get_or_kept)."""
        key = (op_id, version)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
        return kept

    def version(self, op_id: str) -> int | None:
        """The version of an operation last kept, if its bytes still are."""
        return self._versions.get(op_id)

    def operation(self, op: Operation, now: datetime) -> bytes:
        key = (op.id, op.version)
        kept = self._kept.get(key)
        if kept is not None:
            self._kept.move_to_end(key)
            return kept
        data: bytes = operation(op, now).SerializeToString()
        if op.state.value == "QUEUED" and op.run_after > now:
            return data
        if op.done and op.notify_url is not None:
            return data  # its webhook's delivery changes without a new version
        self._kept[key] = data
        self._versions[op.id] = op.version
        if len(self._kept) > self._size:
            (old_id, old_version), _ = self._kept.popitem(last=False)
            if self._versions.get(old_id) == old_version:
                del self._versions[old_id]
        return data

    def watch_response(self, op: Operation, now: datetime) -> bytes:
        """A serialized lrod.v1.WatchOperationResponse: its one field,
        `operation` (1, length-delimited), around the kept bytes."""
        data = self.operation(op, now)
        return _OPERATION_FIELD + _varint(len(data)) + data


# WatchOperationResponse.operation, BatchSubmitResponse.operations and
# Operation.name: field 1, wire type 2.
_OPERATION_FIELD = bytes([(1 << 3) | 2])


@functools.lru_cache(maxsize=1024)
def _size(value: int) -> bytes:
    """A length as a varint: the lengths of a batch's members repeat."""
    return _varint(value)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def job_type(jt: JobType) -> job_service_pb2.JobType:
    return job_service_pb2.JobType(
        name=jt.name,
        input_type=jt.input_type.DESCRIPTOR.full_name,
        output_type=jt.output_type.DESCRIPTOR.full_name,
        max_attempts=jt.max_attempts,
        default_timeout=duration(jt.default_timeout),
        max_timeout=duration(jt.max_timeout),
        description=jt.description,
    )
