"""Conversion between table rows and domain objects."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lrod.domain.errors import Code
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.states import State
from lrod.domain.webhooks import Delivery, DeliveryState


def error_to_json(error: PublicError | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {
        "code": int(error.code),
        "message": error.message,
        "reason": error.reason,
        "domain": error.domain,
        "metadata": dict(error.metadata),
    }


def error_from_json(data: dict[str, Any] | None) -> PublicError | None:
    if data is None:
        return None
    return PublicError(
        code=Code(data["code"]),
        message=data["message"],
        reason=data["reason"],
        domain=data["domain"],
        metadata=data.get("metadata") or {},
    )


# Every read, claim and create converts rows: the frozen dataclasses are built
# by filling their __dict__ (what their __init__ does, one object.__setattr__
# per field, at several times the cost). They have no __post_init__, and
# tests/unit/test_rows.py checks that every field is filled.
_STATES = {state.value: state for state in State}
_new = object.__new__


def _payload(type_url: str, value: Any) -> Payload:
    payload = _new(Payload)
    payload.__dict__.update(type_url=type_url, value=bytes(value))
    return payload


def to_operation(row: Any) -> Operation:
    progress = _new(Progress)
    progress.__dict__.update(
        completed=row.progress_completed, total=row.progress_total, stage=row.progress_stage
    )
    result_type = row.result_type
    error = row.error
    last_error = row.last_attempt_error
    timeout = row.timeout_seconds
    labels = row.labels
    op = _new(Operation)
    op.__dict__.update(
        id=row.id,
        owner=row.owner,
        job_type=row.job_type,
        state=_STATES[row.state],
        input=_payload(row.input_type, row.input_value),
        create_time=row.create_time,
        update_time=row.update_time,
        run_after=row.run_after,
        priority=row.priority,
        labels=dict(labels) if labels else {},
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        start_time=row.start_time,
        end_time=row.end_time,
        expire_time=row.expire_time,
        cancel_requested=bool(row.cancel_requested),
        progress=progress,
        result=None if result_type is None else _payload(result_type, row.result_value or b""),
        error=None if error is None else error_from_json(error),
        last_attempt_error=None if last_error is None else error_from_json(last_error),
        timeout=None if timeout is None else timedelta(seconds=timeout),
        request_id=row.request_id,
        dedupe_key=row.dedupe_key,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        version=row.version,
        notify_url=row.notify_url,
        delivery=None,
    )
    return op


def to_delivery(row: Any) -> Delivery:
    return Delivery(
        operation_id=row.operation_id,
        webhook_id=row.webhook_id,
        url=row.url,
        state=DeliveryState(row.state),
        attempts=row.attempts,
        next_attempt_time=row.next_attempt_time,
        last_status=row.last_status,
        last_error=row.last_error,
        create_time=row.create_time,
        end_time=row.end_time,
    )
