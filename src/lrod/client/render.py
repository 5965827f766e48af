"""What the client prints: operations, tables, results, RPC errors and JSON.
Tables are drawn with rich on a terminal and as plain aligned columns
otherwise, so that pipes get text that grep and awk can read."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import click
import grpc
from google.longrunning import operations_pb2
from google.protobuf import timestamp_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from rich.console import Console
from rich.table import Table

from lrod.client.messages import Metadata, metadata_of, packed_dict
from lrod.client.progress import percent
from lrod.v1 import job_service_pb2, operation_metadata_pb2

State = Metadata.State


def emit_json(data: Any, *, compact: bool = False) -> None:
    """One JSON document on stdout (one line if compact: JSON Lines)."""
    click.echo(json.dumps(data, indent=None if compact else 2, sort_keys=compact))


def when(stamp: timestamp_pb2.Timestamp) -> str:
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def code_name(code: int) -> str:
    return str(code_pb2.Code.Name(code)) if code in code_pb2.Code.values() else str(code)


def error_text(status: status_pb2.Status) -> str:
    """`CODE (REASON): message`, the reason from the ErrorInfo detail."""
    reason = ""
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            reason = f" ({info.reason})"
    return f"{code_name(status.code)}{reason}: {status.message}"


def progress_text(meta: Metadata) -> str:
    progress, share = meta.progress, percent(meta)
    text = f"{progress.completed}/{progress.total} ({share}%)" if share is not None else ""
    if not text and progress.completed:
        text = str(progress.completed)
    return " ".join(part for part in (text, progress.stage) if part)


def result_text(op: operations_pb2.Operation) -> str:
    """The response as one line of JSON."""
    return json.dumps(packed_dict(op.response))


def print_operation(op: operations_pb2.Operation) -> None:
    meta = metadata_of(op)
    rows: list[tuple[str, str]] = [
        ("name", op.name),
        ("job type", meta.job_type),
        ("state", State.Name(meta.state) + (" (cancel requested)" if _cancelling(op) else "")),
        ("progress", progress_text(meta)),
        ("attempt", f"{meta.attempt} of {meta.max_attempts}"),
        ("priority", str(meta.priority)),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(meta.labels.items()))),
    ]
    for label, field in (
        ("created", "create_time"),
        ("started", "start_time"),
        ("ended", "end_time"),
        ("next attempt", "next_attempt_time"),
        ("expires", "expire_time"),
    ):
        if meta.HasField(field):
            rows.append((label, when(getattr(meta, field))))
    if meta.HasField("last_attempt_error") and not op.HasField("error"):
        rows.append(("last attempt error", error_text(meta.last_attempt_error)))
    if op.HasField("response"):
        rows.append(("result", result_text(op)))
    if op.HasField("error"):
        rows.append(("error", error_text(op.error)))
    if meta.HasField("webhook"):
        rows.append(("webhook", webhook_text(meta.webhook)))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        if value:
            click.echo(f"{label + ':':<{width + 2}}{value}")


def webhook_text(hook: operation_metadata_pb2.WebhookDelivery) -> str:
    """One line: the delivery's state, attempts, last answer and next try."""
    state = operation_metadata_pb2.WebhookDelivery.State.Name(hook.state).removeprefix("STATE_")
    parts = [state.lower(), hook.url, f"{hook.attempts} attempt{'s' if hook.attempts != 1 else ''}"]
    if hook.last_http_status:
        parts.append(f"last status {hook.last_http_status}")
    if hook.last_error:
        parts.append(f"last error {hook.last_error}")
    if hook.HasField("next_attempt_time"):
        parts.append(f"next try {when(hook.next_attempt_time)}")
    parts.append(f"id {hook.webhook_id}")
    return ", ".join(parts)


def print_outcome(op: operations_pb2.Operation) -> None:
    """After following an operation: its result on stdout, or why it did not
    succeed on stderr."""
    if not op.done:
        click.echo(f"{op.name} is not done yet ({State.Name(metadata_of(op).state)})", err=True)
    elif op.HasField("error"):
        verb = "cancelled" if op.error.code == code_pb2.CANCELLED else "failed"
        click.echo(f"{op.name} {verb}: {error_text(op.error)}", err=True)
    else:
        click.echo(f"result: {result_text(op)}")


def _cancelling(op: operations_pb2.Operation) -> bool:
    return metadata_of(op).cancel_requested and not op.done


def operations_table(ops: Sequence[operations_pb2.Operation], console: Console | None) -> None:
    header = ("NAME", "TYPE", "STATE", "PROGRESS", "ATTEMPT", "CREATED", "LABELS")
    rows = []
    for op in ops:
        meta = metadata_of(op)
        rows.append(
            (
                op.name,
                meta.job_type,
                State.Name(meta.state) + ("*" if _cancelling(op) else ""),
                progress_text(meta),
                f"{meta.attempt}/{meta.max_attempts}",
                when(meta.create_time),
                ",".join(f"{k}={v}" for k, v in sorted(meta.labels.items())),
            )
        )
    _table(header, rows, console)


def job_types_table(types: Sequence[job_service_pb2.JobType], console: Console | None) -> None:
    header = ("NAME", "INPUT", "OUTPUT", "ATTEMPTS", "TIMEOUT", "DESCRIPTION")
    rows = [
        (
            t.name,
            t.input_type,
            t.output_type,
            str(t.max_attempts),
            f"{t.default_timeout.ToTimedelta().total_seconds():g}s",
            t.description,
        )
        for t in types
    ]
    _table(header, rows, console)


def _table(
    header: tuple[str, ...], rows: Sequence[tuple[str, ...]], console: Console | None
) -> None:
    if console is not None:
        table = Table(*header, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def rpc_error(error: grpc.RpcError) -> list[str]:
    """The lines that explain a failed call: status code, message, and the
    google.rpc.Status details (ErrorInfo reason, field violations, retry delay)."""
    code = error.code()
    lines = [f"error: {code.name}: {error.details() or 'no message'}"]
    status = _status_of(error)
    if status is None:
        return lines
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if detail.Unpack(info):
            extra = "".join(f" {k}={v}" for k, v in sorted(info.metadata.items()))
            lines.append(f"reason: {info.reason} (domain {info.domain}){extra}")
        elif detail.Unpack(bad):
            lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
        elif detail.Unpack(retry):
            delay = retry.retry_delay.ToTimedelta().total_seconds()
            lines.append(f"retry after: {delay:g}s")
    return lines


def _status_of(error: grpc.RpcError) -> status_pb2.Status | None:
    try:
        status: status_pb2.Status | None = rpc_status.from_call(error)
    except ValueError:  # details that do not match the status line
        return None
    return status
