"""Following an operation on screen: a live progress bar with stage and ETA
on a terminal (rich), one plain line per change otherwise."""

from __future__ import annotations

import time
from datetime import timedelta
from types import TracebackType
from typing import IO, Any, Protocol

from google.longrunning import operations_pb2
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from lrod.client.messages import Metadata, metadata_of

State = Metadata.State


def eta(meta: Metadata) -> timedelta | None:
    """Time left at the rate so far (from the start to the last progress
    update, both server times, so the local clock does not matter)."""
    progress = meta.progress
    if (
        meta.state != State.RUNNING
        or not meta.HasField("start_time")
        or progress.completed <= 0
        or progress.total <= progress.completed
    ):
        return None
    elapsed = meta.update_time.ToDatetime() - meta.start_time.ToDatetime()
    if elapsed <= timedelta(0):
        return None
    return elapsed * ((progress.total - progress.completed) / progress.completed)


def percent(meta: Metadata) -> int | None:
    total = meta.progress.total
    if total <= 0:
        return None
    return min(100, int(100 * meta.progress.completed / total))


def short_duration(span: timedelta) -> str:
    seconds = max(int(span.total_seconds() + 0.5), 0)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def describe(op: operations_pb2.Operation) -> str:
    """One line: name, state, progress, stage, attempt (no ETA, so that the
    line changes only when the operation does)."""
    meta = metadata_of(op)
    parts = [op.name, State.Name(meta.state)]
    share = percent(meta)
    if share is not None:
        parts.append(f"{share}% ({meta.progress.completed}/{meta.progress.total})")
    elif meta.progress.completed:
        parts.append(str(meta.progress.completed))
    if meta.progress.stage:
        parts.append(f"stage={meta.progress.stage}")
    if meta.attempt:
        parts.append(f"attempt={meta.attempt}/{meta.max_attempts}")
    if meta.cancel_requested and not op.done:
        parts.append("cancel-requested")
    if meta.HasField("next_attempt_time") and not op.done:
        parts.append(f"next-attempt={meta.next_attempt_time.ToJsonString()}")
    return " ".join(parts)


class Display(Protocol):
    def update(self, op: operations_pb2.Operation) -> None: ...
    def close(self) -> None: ...


class PlainLines:
    """One line per change, for logs and pipes."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self._last = ""

    def update(self, op: operations_pb2.Operation) -> None:
        line = describe(op)
        if line == self._last:
            return
        self._last = line
        left = eta(metadata_of(op))
        suffix = f" eta={short_duration(left)}" if left is not None else ""
        self._out.write(line + suffix + "\n")
        self._out.flush()

    def close(self) -> None:
        pass


class EtaColumn(ProgressColumn):
    """The ETA of the last update, counting down until the next one."""

    def render(self, task: Task) -> Text:
        until = task.fields.get("eta_until")
        if until is None:
            return Text("")
        left = timedelta(seconds=max(until - time.monotonic(), 0.0))
        return Text(f"eta {short_duration(left)}")


class LiveBar:
    """A bar redrawn in place: percentage, count, stage, state, ETA and the
    time elapsed."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            SpinnerColumn(finished_text="•"),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("[cyan]{task.fields[stage]}"),
            TextColumn("{task.fields[state]}"),
            EtaColumn(),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=8,
        )
        self._task: TaskID | None = None
        self._progress.start()

    def update(self, op: operations_pb2.Operation) -> None:
        meta = metadata_of(op)
        total: int | None = meta.progress.total or None
        completed = meta.progress.completed
        left = eta(meta)
        fields: dict[str, Any] = {
            "count": f"{completed}/{total}" if total else "",
            "stage": meta.progress.stage,
            "state": _state_text(op, meta),
            "eta_until": None if left is None else time.monotonic() + left.total_seconds(),
        }
        if op.done and total is None and not op.HasField("error"):
            total = completed = 1  # a job that reported no progress: show it full
        if self._task is None:
            self._task = self._progress.add_task(
                f"{meta.job_type} {op.name}", total=total, completed=completed, **fields
            )
        else:
            self._progress.update(self._task, total=total, completed=completed, **fields)

    def close(self) -> None:
        self._progress.stop()


def _state_text(op: operations_pb2.Operation, meta: Metadata) -> str:
    name = State.Name(meta.state)
    style = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow"}.get(name, "")
    text = f"[{style}]{name}[/]" if style else name
    if meta.attempt > 1:
        text += f" (attempt {meta.attempt}/{meta.max_attempts})"
    if meta.cancel_requested and not op.done:
        text += " cancelling"
    return text


class Following:
    """`with Following(out, live) as display:` the live bar or plain lines."""

    def __init__(self, out: IO[str], live: bool) -> None:
        self._display: Display = (
            LiveBar(Console(file=out, force_terminal=True)) if live else PlainLines(out)
        )

    def __enter__(self) -> Display:
        return self._display

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._display.close()
