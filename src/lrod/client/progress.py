"""Following an operation on screen: a live progress bar with stage and ETA
on a terminal (rich), one plain line per change otherwise."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import IO, Protocol

from google.longrunning import operations_pb2
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
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


_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_STATE_STYLE = {"SUCCEEDED": "green", "FAILED": "red", "CANCELLED": "yellow"}


@dataclass
class Snapshot:
    """What the bar shows of the latest update of an operation."""

    name: str
    job_type: str
    state: str
    completed: int
    total: int
    stage: str
    eta_until: float | None
    done: bool
    failed: bool


def snapshot(op: operations_pb2.Operation, now: float) -> Snapshot:
    meta = metadata_of(op)
    left = eta(meta)
    total, completed = meta.progress.total, meta.progress.completed
    failed = op.HasField("error")
    if op.done and total <= 0 and not failed:
        total = completed = 1  # a job that reported no progress: show it full
    return Snapshot(
        name=op.name,
        job_type=meta.job_type,
        state=_state_text(op, meta),
        completed=completed,
        total=total,
        stage=meta.progress.stage,
        eta_until=None if left is None else now + left.total_seconds(),
        done=op.done,
        failed=failed,
    )


def short_name(job_type: str, name: str) -> str:
    """`sleep 1a2b3c` for examples.sleep operations/1a2b3c...: the job
    type's last part and the id's first six characters (enough to tell
    operations apart on one screen; the full name is printed at the end)."""
    kind = job_type.rsplit(".", 1)[-1][:16]
    return f"{kind} {name.removeprefix('operations/')[:6]}"


class BarLine:
    """One line that fits `width` columns: spinner, short name, bar,
    percentage, count, stage, state, ETA and elapsed time. Each field keeps
    the widest width it has had, so the line does not jump between frames;
    below 80 columns the elapsed time, then the name, then the stage give
    way, and the bar keeps at least 15 columns while it can."""

    MIN_BAR = 15

    def __init__(self) -> None:
        self._widths: dict[str, int] = {}
        self._started = time.monotonic()

    def _fit(self, key: str, text: str) -> str:
        width = max(self._widths.get(key, 0), len(text))
        self._widths[key] = width
        return text.ljust(width)

    def render(self, shot: Snapshot, width: int, now: float) -> Text:
        share = min(100, int(100 * shot.completed / shot.total)) if shot.total > 0 else None
        left = None if shot.eta_until is None else max(shot.eta_until - now, 0.0)
        count = f"{shot.completed}/{shot.total}" if shot.total > 0 else str(shot.completed)
        text = {
            "spin": "•" if shot.done else _SPINNER[int(now * 8) % len(_SPINNER)],
            "name": self._fit("name", short_name(shot.job_type, shot.name)),
            "pct": self._fit("pct", f"{share:>3}%" if share is not None else "  -%"),
            "count": self._fit("count", count),
            "stage": self._fit("stage", _clip(shot.stage, 16)),
            "state": self._fit("state", _plain(shot.state)),
            "eta": self._fit(
                "eta", "" if left is None else f"eta {short_duration(timedelta(seconds=left))}"
            ),
            "elapsed": self._fit("elapsed", short_duration(timedelta(seconds=now - self._started))),
        }
        # What gives way first when the line does not fit with a bar of MIN_BAR.
        for optional in ("elapsed", "name", "stage"):
            if self._bar_room(text, width) >= self.MIN_BAR:
                break
            text[optional] = ""
        bar = max(self._bar_room(text, width), 1)
        line = Text()
        line.append(text["spin"] + " ", style="cyan")
        if text["name"]:
            line.append(text["name"] + " ", style="bold")
        line.append_text(_bar(shot, bar))
        line.append(f" {text['pct']} {text['count']}")
        if text["stage"]:
            line.append(" " + text["stage"], style="cyan")
        line.append(" " + text["state"], style=_STATE_STYLE.get(shot.state.split()[0], ""))
        if text["eta"]:
            line.append(" " + text["eta"])
        if text["elapsed"]:
            line.append(" " + text["elapsed"], style="dim")
        line.truncate(width)
        return line

    @staticmethod
    def _bar_room(text: dict[str, str], width: int) -> int:
        """Columns left for the bar: each shown field takes its width and a space."""
        shown = [value for value in text.values() if value]
        return width - sum(len(value) + 1 for value in shown) - 1


def _bar(shot: Snapshot, width: int) -> Text:
    if shot.total <= 0:
        return Text("─" * width, style="dim")
    filled = min(width, round(width * shot.completed / shot.total))
    style = "red" if shot.failed else ("green" if shot.done else "magenta")
    return Text("━" * filled, style=style) + Text("─" * (width - filled), style="dim")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(markup: str) -> str:
    return Text.from_markup(markup).plain


class LiveBar:
    """The bar redrawn in place, eight times a second (the ETA counts down
    between updates)."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._line = BarLine()
        self._shot: Snapshot | None = None
        self._live = Live(self, console=console, refresh_per_second=8, transient=False)
        self._live.start()

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if self._shot is not None:
            yield self._line.render(self._shot, options.max_width, time.monotonic())

    def update(self, op: operations_pb2.Operation) -> None:
        self._shot = snapshot(op, time.monotonic())
        self._live.refresh()

    def close(self) -> None:
        self._live.stop()


def _state_text(op: operations_pb2.Operation, meta: Metadata) -> str:
    name = State.Name(meta.state)
    text = name
    if meta.attempt > 1:
        text += f" {meta.attempt}/{meta.max_attempts}"
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
