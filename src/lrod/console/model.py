"""What the console's pages show, computed from domain objects: the
overview's rates, an operation's progress and ETA, payloads as JSON. No
HTML here (the templates escape every value) and no I/O."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import any_pb2, json_format

from lrod.domain.errors import Code
from lrod.domain.operation import Operation, Payload, PublicError
from lrod.domain.states import State
from lrod.store.protocol import JobTypeOverview

# The overview's windows, in minutes, as the picker offers them.
WINDOWS = (5, 15, 60, 24 * 60)
WINDOW_LABELS = {5: "5 minutes", 15: "15 minutes", 60: "hour", 24 * 60: "24 hours"}
DEFAULT_WINDOW = 15


@dataclass(frozen=True)
class OverviewRow:
    counts: JobTypeOverview
    oldest_queued_age: timedelta | None
    per_minute: float
    failure_rate: float | None


def overview_rows(
    counts: Sequence[JobTypeOverview], window_minutes: int, now: datetime
) -> list[OverviewRow]:
    rows = []
    for c in counts:
        judged = c.succeeded + c.failed
        rows.append(
            OverviewRow(
                c,
                now - c.oldest_due if c.oldest_due is not None else None,
                c.finished / window_minutes,
                c.failed / judged if judged else None,
            )
        )
    return rows


def totals(counts: Sequence[JobTypeOverview]) -> JobTypeOverview:
    return JobTypeOverview(
        "all",
        sum(c.queued for c in counts),
        sum(c.running for c in counts),
        sum(c.succeeded for c in counts),
        sum(c.failed for c in counts),
        sum(c.cancelled for c in counts),
        min((c.oldest_due for c in counts if c.oldest_due is not None), default=None),
    )


def percent(op: Operation) -> int | None:
    if op.state is State.SUCCEEDED:
        return 100
    if op.progress.total <= 0:
        return None
    return min(100, int(100 * op.progress.completed / op.progress.total))


def eta(op: Operation) -> timedelta | None:
    """Time left at the rate so far: from the start to the last progress
    update, both the server's times."""
    progress = op.progress
    if (
        op.state is not State.RUNNING
        or op.start_time is None
        or progress.completed <= 0
        or progress.total <= progress.completed
    ):
        return None
    elapsed = op.update_time - op.start_time
    if elapsed <= timedelta(0):
        return None
    return elapsed * ((progress.total - progress.completed) / progress.completed)


def short_duration(span: timedelta | None) -> str:
    if span is None:
        return "-"
    seconds = max(int(span.total_seconds() + 0.5), 0)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def payload_json(payload: Payload | None) -> str:
    """A packed message as protobuf JSON (with its @type), or a note when
    this server does not know its type."""
    if payload is None:
        return ""
    packed = any_pb2.Any(type_url=payload.type_url, value=payload.value)
    try:
        body = json_format.MessageToDict(packed)
    except (TypeError, KeyError, json_format.Error):
        return json.dumps(
            {"@type": payload.type_url, "bytes": len(payload.value), "note": "unknown type"},
            indent=2,
        )
    return json.dumps(body, indent=2, sort_keys=False)


def error_json(error: PublicError | None) -> str:
    if error is None:
        return ""
    return json.dumps(error_dict(error), indent=2)


def error_dict(error: PublicError) -> dict[str, Any]:
    return {
        "code": Code(error.code).name,
        "message": error.message,
        "reason": error.reason,
        "domain": error.domain,
        "metadata": dict(error.metadata),
    }


def live(op: Operation) -> dict[str, Any]:
    """The live part of an operation page, for its event stream."""
    share = percent(op)
    return {
        "state": op.state.value,
        "done": op.done,
        "completed": op.progress.completed,
        "total": op.progress.total,
        "stage": op.progress.stage,
        "percent": share,
        "eta": short_duration(eta(op)) if eta(op) is not None else "",
        "attempt": f"{op.attempt} of {op.max_attempts}",
        "cancel_requested": op.cancel_requested,
        "updated": op.update_time.isoformat(timespec="seconds"),
        "response": payload_json(op.result) if op.done else "",
        "error": error_json(op.error) if op.done else "",
    }
