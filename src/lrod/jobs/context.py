"""The handler's view of its job: progress, heartbeats, cancellation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from lrod.domain.operation import Progress

_NO_PROGRESS = Progress()


class JobCancelled(Exception):
    """Raised by `JobContext.raise_if_cancelled` once a cancel was requested."""


@dataclass(frozen=True)
class JobInfo:
    operation_name: str
    job_type: str
    attempt: int
    max_attempts: int
    labels: Mapping[str, str]


class JobContext:
    """Safe to use from the event loop (async handlers) and from the worker
    thread of a sync handler. Progress writes are coalesced by the worker."""

    def __init__(self, info: JobInfo, loop: asyncio.AbstractEventLoop) -> None:
        self.info = info
        self._loop = loop
        self._lock = threading.Lock()
        self._progress = Progress()
        self._unsent = False
        self._dirty = asyncio.Event()
        # A plain flag (set once, on the loop; read from any thread) and an
        # Event made only for a handler that awaits `cancelled()`.
        self._cancel_asked = False
        self._cancelled: asyncio.Event | None = None
        self._on_report: Callable[[], None] | None = None
        self._stopped: threading.Event | None = None  # made at its first use

    @property
    def stopped(self) -> threading.Event:
        """Set once the attempt's time ran out or it was abandoned. Made at
        its first use (a stop, or a handler that looks): most attempts never
        need it, and a threading.Event costs more than the rest of the
        context together."""
        stopped = self._stopped
        if stopped is None:
            with self._lock:
                if self._stopped is None:
                    self._stopped = threading.Event()
                stopped = self._stopped
        return stopped

    # -- for handlers -------------------------------------------------------
    def report_progress(
        self, completed: int, total: int | None = None, stage: str | None = None
    ) -> None:
        with self._lock:
            old = self._progress
            self._unsent = True
            self._progress = Progress(
                completed=completed,
                total=old.total if total is None else total,
                stage=old.stage if stage is None else stage,
            )
        self._call_soon(self._reported)

    def heartbeat(self) -> None:
        """Say the job is alive without new progress; the lease is renewed
        regardless while the handler runs, so this is rarely needed."""
        self._call_soon(self._dirty.set)

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_asked

    async def cancelled(self) -> None:
        """Wait until a cancel is requested."""
        if self._cancel_asked:
            return
        if self._cancelled is None:
            self._cancelled = asyncio.Event()
        await self._cancelled.wait()

    def raise_if_cancelled(self) -> None:
        stopped = self._stopped
        if self._cancel_asked or (stopped is not None and stopped.is_set()):
            raise JobCancelled()

    # -- for the worker -----------------------------------------------------
    def request_cancel(self) -> None:
        """On the event loop."""
        self._cancel_asked = True
        if self._cancelled is not None:
            self._cancelled.set()

    def when_reported(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` on the event loop after each progress report
        (the worker starts its progress writer at the first one only)."""
        self._on_report = callback

    def _reported(self) -> None:
        self._dirty.set()
        if self._on_report is not None:
            self._on_report()

    def latest_progress(self) -> Progress | None:
        """The last progress reported, sent or not; None if none was."""
        with self._lock:
            return self._progress if self._unsent or self._progress != _NO_PROGRESS else None

    def take_progress(self) -> Progress | None:
        """The progress reported since the last call, if any."""
        with self._lock:
            unsent, self._unsent = self._unsent, False
            progress = self._progress
        self._dirty.clear()
        return progress if unsent else None

    async def wait_for_report(self, timeout: float | None) -> None:
        """Until the handler reports (progress or a heartbeat), or `timeout`
        seconds pass; `None`: no time limit (and no timer)."""
        if timeout is None:
            await self._dirty.wait()
            return
        try:
            async with asyncio.timeout(timeout):
                await self._dirty.wait()
        except TimeoutError:
            return

    def _call_soon(self, callback: object) -> None:
        assert callable(callback)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            callback()
        else:
            self._loop.call_soon_threadsafe(callback)
