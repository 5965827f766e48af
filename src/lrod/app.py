"""Wiring: the store, hub, manager, worker pool and gRPC server of one process,
and their orderly start and drain."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

import grpc
from aiohttp.abc import AbstractResolver

from lrod.api.health import HealthMonitor
from lrod.api.identity import CallGate
from lrod.api.server import SERVICES, build_server
from lrod.auth.config import auth_settings, build_authentication, check_settings_listeners
from lrod.console.access import access_for as console_access
from lrod.domain.errors import LrodError
from lrod.http.server import HttpFrontDoor
from lrod.hub import ChangeHub
from lrod.jobs.registry import Registry
from lrod.listen import grpc_address
from lrod.manager import OperationManager
from lrod.metrics import Metrics, MetricsServer
from lrod.quotas import Quotas
from lrod.settings import ConfigurationError, Settings
from lrod.store.endings import TransitionLog
from lrod.store.engine import open_database
from lrod.store.migrate import upgrade
from lrod.store.sql_store import SqlStore
from lrod.tls import ServerTls
from lrod.webhooks.config import WebhookConfig
from lrod.webhooks.dispatcher import Dispatcher
from lrod.worker import WorkerPool
from lrod.worker.presence import WorkerPresence

log = logging.getLogger("lrod")

__all__ = ["Service", "Settings", "run"]


class Service:
    """One lrod process: API and/or workers on one database."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        webhook_resolver: AbstractResolver | None = None,
    ) -> None:
        """`webhook_resolver`: the DNS resolver behind the webhook SSRF guard
        (default: the system's)."""
        webhooks = WebhookConfig.of(settings.webhooks)
        webhooks.check_defaults(registry)  # before anything is opened
        self.settings = settings
        self.registry = registry
        self.hub = ChangeHub()
        self.metrics = Metrics()
        self.store = SqlStore(open_database(settings.database_url), self.hub)
        # Metrics and logs hang on the seam where every job ends.
        self.store.subscribe(self.metrics)
        self.store.subscribe(TransitionLog())
        self.manager = OperationManager(
            self.store,
            self.hub,
            registry,
            settings.manager,
            metrics=self.metrics,
            webhook_rules=webhooks.rules,
            quotas=Quotas(settings.quotas, self.store),
        )
        self.health = HealthMonitor(
            self.store, SERVICES, settings.health_interval, metrics=self.metrics
        )
        self.pool = (
            WorkerPool(self.store, self.hub, registry, settings.workers, metrics=self.metrics)
            if settings.workers is not None and settings.workers.concurrency > 0
            else None
        )
        if self.pool is not None and self.pool.settings.hand_off:
            self.manager.local_workers = self.pool
        self.presence = (
            WorkerPresence(
                self.store,
                self.pool.settings.worker_id,
                self.pool.settings.concurrency,
                [t.name for t in registry],
                lambda: self.pool.running_count if self.pool is not None else 0,
                settings.presence,
            )
            if self.pool is not None
            else None
        )
        # Worker processes with a signing secret send the webhooks.
        self.dispatcher: Dispatcher | None = None
        if self.pool is not None and webhooks.signers and settings.webhooks.concurrency > 0:
            self.dispatcher = Dispatcher(
                self.store, webhooks, self.metrics, self.manager.clock, webhook_resolver
            )
            self.store.subscribe(self.dispatcher)
        elif self.pool is not None and settings.webhooks.concurrency > 0:
            log.info("no --webhook-secrets: this process sends no webhooks")
        self.metrics_server: MetricsServer | None = None
        self.notifications = self.store.notification_listener()
        self.server: grpc.aio.Server | None = None
        self.http: HttpFrontDoor | None = None
        self.port: int | None = None
        self._janitor: asyncio.Task[None] | None = None
        self.auth_settings = auth_settings(settings.security)
        self.authentication, self._jwts = build_authentication(self.auth_settings)
        tls = self.auth_settings.tls
        self.tls = ServerTls(tls) if tls is not None else None

    def check_listeners(self) -> None:
        """The safe default: raises UnsafeListener before anything starts."""
        check_settings_listeners(self.settings, self.authentication)

    def reload(self) -> None:
        """SIGHUP: re-read the TLS files, token file and JWKS now."""
        log.info("reloading TLS and authentication files")
        if self.tls is not None:
            self.tls.reload(force=True)
        self.authentication.reload()

    async def start(self) -> None:
        self.check_listeners()
        for jwt in self._jwts:
            await jwt.start()
        if self.settings.migrate:
            before, after = await asyncio.to_thread(upgrade, self.settings.database_url)
            if before != after:
                log.info("database upgraded from revision %s to %s", before or "none", after)
        if self.settings.metrics_address is not None:
            self._serve_metrics(self.settings.metrics_address)
        self.notifications.start()
        if self.settings.serve_api or self.metrics_server is not None:
            # A worker-only process checks the database too when it serves
            # metrics, so that lrod_database_up means what it says.
            await self.health.start()
        if self.settings.serve_api:
            self.server = build_server(
                self.manager,
                self.health,
                reuse_port=self.settings.reuse_port,
                auth=CallGate(self.authentication).policy,
            )
            address = grpc_address(self.settings.address)
            try:
                if self.tls is not None:
                    self.port = self.server.add_secure_port(address, self.tls.grpc_credentials())
                else:
                    self.port = self.server.add_insecure_port(address)
            except RuntimeError:
                raise _in_use(self.settings.address, "--address") from None
            if self.tls is not None:
                self.tls.start_watching()
            await self.server.start()
            log.info(
                "serving on port %d",
                self.port,
                extra={"tls": self.tls is not None, "auth": self.authentication.required},
            )
            if self.settings.http_address is not None:
                self.http = HttpFrontDoor(
                    self.manager,
                    self.settings.http_address,
                    authentication=self.authentication,
                    allowed_hosts=frozenset(self.auth_settings.http_allowed_hosts) or None,
                    ssl_context=self.tls.ssl_context() if self.tls is not None else None,
                    reuse_port=self.settings.reuse_port,
                    console=self.settings.console,
                    http=self.settings.http,
                    console_access=console_access(self.authentication),
                )
                try:
                    await self.http.start()
                except OSError as error:
                    raise _in_use(self.settings.http_address, "--http-address", error) from None
                log.info("serving HTTP on port %d", self.http.port)
        if self.pool is not None:
            self.pool.start()
            log.info(
                "worker ready: %d slots for job types %s",
                self.pool.settings.concurrency,
                ", ".join(t.name for t in self.registry) or "(none)",
            )
        if self.presence is not None:
            await self.presence.start()
        if self.dispatcher is not None:
            self.dispatcher.start()
        self._janitor = asyncio.create_task(self._expire_loop(), name="lrod-janitor")

    async def abandon(self) -> None:
        """Close what a failed start had opened, quietly: the start's own error
        is what the operator needs to read."""
        logging.disable(logging.WARNING)  # what fails here follows from the start's error
        try:
            await self.stop(0)
        except Exception:
            log.debug("closing after a failed start", exc_info=True)
        finally:
            logging.disable(logging.NOTSET)

    async def stop(self, grace: float | None = None) -> None:
        """Drain: refuse new Submits, report NOT_SERVING, let running jobs
        finish within the grace period, hand back the rest, then close."""
        self.manager.accepting = False
        await self.health.drain()
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
        if self.pool is not None:
            await self.pool.stop(grace)
        if self.presence is not None:
            await self.presence.stop()
        if self.dispatcher is not None:
            await self.dispatcher.stop()
        if self.http is not None:
            await self.http.stop()
        if self.server is not None:
            await self.server.stop(1.0)
        await self.health.stop()
        if self.tls is not None:
            await self.tls.stop_watching()
        await self.notifications.stop()
        if self.metrics_server is not None:
            await self.metrics_server.stop()
        await self.store.close()

    def _serve_metrics(self, address: str) -> None:
        self.metrics.watch_queue(
            self.store.queue_stats,
            lambda: (t.name for t in self.registry),
            self.manager.clock,
            asyncio.get_running_loop(),
        )
        try:
            self.metrics_server = MetricsServer.start(address, self.metrics.registry)
        except OSError as error:
            raise _in_use(address, "--metrics-address", error) from None

    async def _expire_loop(self) -> None:
        while True:
            try:
                removed = await self.store.expire(self.manager.clock(), self.settings.janitor_batch)
            except LrodError as error:
                log.warning("expiring operations failed: %s", error.message)
                removed = 0
            # A full batch means more are due: go again at once.
            if removed < self.settings.janitor_batch:
                await asyncio.sleep(self.settings.janitor_interval)


def _in_use(address: str, flag: str, error: OSError | None = None) -> ConfigurationError:
    why = (error.strerror if error is not None else None) or "address already in use"
    return ConfigurationError(
        f"cannot listen on {address} ({flag}): {why}.\n"
        f"Stop the process that holds it (another lrod?) or choose another {flag}."
    )


# Collections of the youngest generation after this many allocations (the
# default is 700), and of the older ones after 20 of the younger (default
# 10): with thousands of calls held, the default collects every few
# milliseconds and promotes each call's objects into the full collections.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_garbage_collection() -> None:
    """For a process of its own (`lrod serve`, `lrod worker`), once started.

    Moves everything alive then (modules, protobuf descriptors, compiled
    statements: about 120,000 objects) out of the collector's reach: a full
    collection walked them all each time, 53-60 ms of CPU for these alone,
    a stall that every call in flight waited out. Frozen objects are never
    collected, hence never in a process that starts services repeatedly
    (tests). Then collects less often (GC_THRESHOLDS); with 3,000
    WaitOperation calls held, one run measured the collector's CPU down from
    467 ms to 139 ms and its longest pause from 138 ms to 61 ms."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run(
    settings: Settings,
    registry: Registry,
    on_ready: Callable[[Service], None] | None = None,
) -> None:
    """Run until SIGTERM or SIGINT, then drain and return. `on_ready` is
    called once the service has started."""
    service = Service(settings, registry)
    try:
        await service.start()
    except BaseException:
        await service.abandon()
        raise
    tune_garbage_collection()
    if on_ready is not None:
        on_ready(service)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def signalled() -> None:
        if not stop.is_set():
            stop.set()
        elif service.pool is not None:
            # A second Ctrl-C (or SIGTERM): cut the drain short.
            log.info("second signal: handing running jobs back now")
            service.pool.hurry()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, signalled)
    loop.add_signal_handler(signal.SIGHUP, service.reload)
    try:
        await stop.wait()
        if service.pool is not None and service.pool.running_count:
            grace = service.pool.settings.drain_grace
            log.info(
                "shutting down: running jobs get %.0f s to finish (Ctrl-C again to hand "
                "them back to the queue now)",
                grace,
            )
        else:
            log.info("shutting down")
    finally:
        await service.stop()
