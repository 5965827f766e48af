"""Prometheus metrics of one process, in a registry of its own (never the
global default), so that several servers in one process do not collide.

The manager, the worker and the RPC wrapper (api/calls.py) record into a `Metrics`; the
queue figures are read from the store at scrape time; `MetricsServer` serves
the text format on a port of its own.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from lrod.domain.operation import Operation
from lrod.domain.states import State
from lrod.store.protocol import EndedBy, QueueStats, Transition

log = logging.getLogger("lrod.metrics")

# Jobs run from milliseconds to a day.
JOB_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
JOB_SECONDS_LONG = (*JOB_SECONDS, 7200, 21600, 86400)
ATTEMPTS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50)
# WaitOperation holds calls up to a minute, and watch streams longer.
RPC_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

QUEUE_STATS_TIMEOUT = 5.0


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.submits = Counter(
            "lrod_submits",
            "Submit calls accepted, by job type and outcome (created, or repeated: "
            "the same request_id or an active dedupe key returned an existing operation).",
            ["job_type", "outcome"],
            registry=r,
        )
        self._submit_children: dict[tuple[str, bool], Any] = {}
        self._transition_children: dict[tuple[str, State, State], Any] = {}
        self._finished_children: dict[tuple[str, State], tuple[Any, Any]] = {}
        self._attempt_children: dict[tuple[str, str], Any] = {}
        self.transitions = Counter(
            "lrod_state_transitions",
            "Operations moved from one state to another.",
            ["job_type", "from", "to"],
            registry=r,
        )
        self.hand_offs = Counter(
            "lrod_hand_offs",
            "Submits this process's idle workers held a slot for (--hand-off), by job type and "
            "outcome: started (stored claimed, no claim needed) or queued (stored queued after "
            "all: due queued work of at least its priority, a repeat, or an error).",
            ["job_type", "outcome"],
            registry=r,
        )
        self.rescued = Counter(
            "lrod_jobs_rescued", "Running jobs taken back after their lease expired.", registry=r
        )
        self.job_duration = Histogram(
            "lrod_job_duration_seconds",
            "From submit to the end state, for finished operations.",
            ["job_type", "state"],
            buckets=JOB_SECONDS_LONG,
            registry=r,
        )
        self.job_attempts = Histogram(
            "lrod_job_attempts",
            "Attempts a finished operation took.",
            ["job_type", "state"],
            buckets=ATTEMPTS,
            registry=r,
        )
        self.attempt_duration = Histogram(
            "lrod_attempt_duration_seconds",
            "How long one attempt ran in this worker, by how it ended.",
            ["job_type", "outcome"],
            buckets=JOB_SECONDS_LONG,
            registry=r,
        )
        self.waiters = Gauge("lrod_active_waiters", "WaitOperation calls being held.", registry=r)
        self.watchers = Gauge("lrod_active_watchers", "WatchOperation streams open.", registry=r)
        self.running_jobs = Gauge(
            "lrod_worker_running_jobs", "Jobs this process is running now.", registry=r
        )
        self.database_up = Gauge(
            "lrod_database_up", "1 if the last health check reached the database.", registry=r
        )
        self.rpc_duration = Histogram(
            "lrod_rpc_duration_seconds",
            "Time to handle an RPC (the whole stream for streaming ones), by method.",
            ["method"],
            buckets=RPC_SECONDS,
            registry=r,
        )
        self.webhook_attempts = Counter(
            "lrod_webhook_attempts",
            "Webhook POSTs tried, by outcome (delivered, http_error, timeout, network_error, "
            "refused: the target's address is not allowed; unencodable: this process cannot "
            "encode the operation's response type).",
            ["outcome"],
            registry=r,
        )
        self.webhook_deliveries = Counter(
            "lrod_webhook_deliveries",
            "Webhook deliveries ended, by outcome (delivered, failed).",
            ["outcome"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "lrod_webhook_attempt_seconds",
            "How long one webhook POST took (to the answer, or the error).",
            buckets=RPC_SECONDS,
            registry=r,
        )
        self.webhook_latency = Histogram(
            "lrod_webhook_delivery_latency_seconds",
            "From the operation's end to its webhook's delivery (retries included).",
            buckets=JOB_SECONDS_LONG,
            registry=r,
        )
        self.rpcs = Counter(
            "lrod_rpc_handled",
            "RPCs finished, by method and status code.",
            ["method", "code"],
            registry=r,
        )

    # -- what the manager and the worker report -----------------------------
    def submitted(self, job_type: str, created: bool, count: int = 1) -> None:
        # The labelled child looked up once per job type and outcome, not on
        # every Submit (labels() validates, locks and builds a tuple).
        child = self._submit_children.get((job_type, created))
        if child is None:
            child = self.submits.labels(job_type, "created" if created else "repeated")
            self._submit_children[(job_type, created)] = child
        child.inc(count)

    def handed_off(self, job_type: str, started: bool) -> None:
        self.hand_offs.labels(job_type, "started" if started else "queued").inc()

    def moved(self, job_type: str, source: State, target: State) -> None:
        # Every job moves twice (claimed, ended): the child looked up once.
        key = (job_type, source, target)
        child = self._transition_children.get(key)
        if child is None:
            child = self.transitions.labels(job_type, source.value, target.value)
            self._transition_children[key] = child
        child.inc()

    def finished(self, op: Operation) -> None:
        """An operation reached its end state."""
        if not op.done:
            return
        key = (op.job_type, op.state)
        children = self._finished_children.get(key)
        if children is None:
            children = (
                self.job_duration.labels(op.job_type, op.state.value),
                self.job_attempts.labels(op.job_type, op.state.value),
            )
            self._finished_children[key] = children
        duration, attempts = children
        if op.end_time is not None:
            seconds = (op.end_time - op.create_time).total_seconds()
            duration.observe(max(seconds, 0.0))
        attempts.observe(op.attempt)

    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        """The store's seam where jobs end: every terminal move and retry,
        whichever write site made it (a subscriber of the store)."""
        for t in transitions:
            self.moved(t.operation.job_type, t.source, t.operation.state)
            self.finished(t.operation)
            if t.by is EndedBy.RESCUE:
                self.rescued.inc()

    def attempt_ended(self, job_type: str, outcome: str, seconds: float) -> None:
        key = (job_type, outcome)
        child = self._attempt_children.get(key)
        if child is None:
            child = self._attempt_children[key] = self.attempt_duration.labels(job_type, outcome)
        child.observe(max(seconds, 0.0))

    @contextmanager
    def waiting(self) -> Iterator[None]:
        self.waiters.inc()
        try:
            yield
        finally:
            self.waiters.dec()

    @contextmanager
    def watching(self) -> Iterator[None]:
        self.watchers.inc()
        try:
            yield
        finally:
            self.watchers.dec()

    def rpc_handled(self, method: str, code: str, seconds: float) -> None:
        self.rpc_duration.labels(method).observe(seconds)
        self.rpcs.labels(method, code).inc()

    def watch_queue(
        self,
        read: Callable[[datetime], Awaitable[Sequence[QueueStats]]],
        job_types: Callable[[], Iterable[str]],
        clock: Callable[[], datetime],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """Report queue figures read from the store at each scrape."""
        self.registry.register(QueueCollector(read, job_types, clock, loop))


class QueueCollector(Collector):
    """Queue depth and the age of the oldest due job, per job type. Scrapes
    arrive on the HTTP server's thread; the store lives on the event loop, so
    the read is handed to the loop and awaited here with a time limit."""

    def __init__(
        self,
        read: Callable[[datetime], Awaitable[Sequence[QueueStats]]],
        job_types: Callable[[], Iterable[str]],
        clock: Callable[[], datetime],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._read = read
        self._job_types = job_types
        self._clock = clock
        self._loop = loop

    def describe(self) -> list[GaugeMetricFamily]:
        # Lets the registry learn the names without querying the store.
        return list(self._families())

    def collect(self) -> Iterator[GaugeMetricFamily]:
        stats = self._fetch()
        if stats is None:
            return
        depth, ready, age = self._families()
        now = self._clock()
        seen = {s.job_type: s for s in stats}
        for job_type in sorted(set(self._job_types()) | set(seen)):
            s = seen.get(job_type, QueueStats(job_type, 0, 0, None))
            depth.add_metric([job_type], s.queued)
            ready.add_metric([job_type], s.due)
            oldest = 0.0 if s.oldest_due is None else (now - s.oldest_due).total_seconds()
            age.add_metric([job_type], max(oldest, 0.0))
        yield from (depth, ready, age)

    def _fetch(self) -> Sequence[QueueStats] | None:
        if self._loop.is_closed():
            return None
        if _running_loop() is self._loop:
            # Blocking the loop on itself would deadlock: only scrape from
            # another thread (the metrics server's).
            log.debug("queue figures skipped: scraped on the event loop's own thread")
            return None

        async def read() -> Sequence[QueueStats]:
            return await self._read(self._clock())

        future = asyncio.run_coroutine_threadsafe(read(), self._loop)
        try:
            return future.result(QUEUE_STATS_TIMEOUT)
        except Exception as error:
            future.cancel()
            log.warning("queue figures unavailable: %s", getattr(error, "message", repr(error)))
            return None

    @staticmethod
    def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
        return (
            GaugeMetricFamily(
                "lrod_queue_depth", "Queued operations (due now or later).", labels=["job_type"]
            ),
            GaugeMetricFamily(
                "lrod_queue_ready", "Queued operations due now.", labels=["job_type"]
            ),
            GaugeMetricFamily(
                "lrod_queue_oldest_age_seconds",
                "How long the oldest due operation has waited to be claimed.",
                labels=["job_type"],
            ),
        )


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port` too) to a pair; ValueError if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]"), int(port)


class MetricsServer:
    """The Prometheus text format over HTTP on a thread of its own."""

    def __init__(self, httpd: WSGIServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread

    @classmethod
    def start(cls, address: str, registry: CollectorRegistry) -> MetricsServer:
        host, port = parse_address(address)
        httpd, thread = start_http_server(port, host, registry)
        server = cls(httpd, thread)
        log.info("metrics on http://%s:%d/metrics", host, server.port)
        return server

    @property
    def port(self) -> int:
        return int(self._httpd.server_port)

    async def stop(self) -> None:
        # shutdown() blocks until the serving thread notices: keep it off the loop.
        await asyncio.to_thread(self._httpd.shutdown)
        self._httpd.server_close()
        await asyncio.to_thread(self._thread.join, 5.0)
