"""Conversion between table rows and domain objects."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from lrod.domain.errors import Code
from lrod.domain.operation import Operation, Payload, Progress, PublicError
from lrod.domain.states import State
from lrod.domain.submission import NewJob
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


def new_row(job: NewJob, fingerprint: str) -> dict[str, Any]:
    return {
        "id": job.id,
        "owner": job.owner,
        "job_type": job.job_type,
        "state": State.QUEUED.value,
        "priority": job.priority,
        "input_type": job.input.type_url,
        "input_value": job.input.value,
        "labels": dict(job.labels),
        "request_id": job.request_id,
        "request_fingerprint": fingerprint if job.request_id else None,
        "dedupe_key": job.dedupe_key,
        "attempt": 0,
        "max_attempts": job.max_attempts,
        "timeout_seconds": job.timeout.total_seconds() if job.timeout is not None else None,
        "create_time": job.create_time,
        "update_time": job.create_time,
        "run_after": job.run_after,
        "cancel_requested": False,
        "progress_completed": 0,
        "progress_total": 0,
        "progress_stage": "",
        "version": 1,
        "notify_url": job.notify_url,
    }


def to_operation(row: Any) -> Operation:
    result = None
    if row.result_type is not None:
        result = Payload(row.result_type, bytes(row.result_value or b""))
    return Operation(
        id=row.id,
        owner=row.owner,
        job_type=row.job_type,
        state=State(row.state),
        input=Payload(row.input_type, bytes(row.input_value)),
        create_time=row.create_time,
        update_time=row.update_time,
        run_after=row.run_after,
        priority=row.priority,
        labels=dict(row.labels or {}),
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        start_time=row.start_time,
        end_time=row.end_time,
        expire_time=row.expire_time,
        cancel_requested=bool(row.cancel_requested),
        progress=Progress(row.progress_completed, row.progress_total, row.progress_stage),
        result=result,
        error=error_from_json(row.error),
        last_attempt_error=error_from_json(row.last_attempt_error),
        timeout=timedelta(seconds=row.timeout_seconds) if row.timeout_seconds is not None else None,
        request_id=row.request_id,
        dedupe_key=row.dedupe_key,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        version=row.version,
        notify_url=row.notify_url,
    )


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
