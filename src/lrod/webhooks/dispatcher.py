"""The webhook dispatcher of a worker process: takes due deliveries from the
outbox, POSTs each operation's final state signed per Standard Webhooks, and
records the outcome (delivered, retry per the schedule, or failed).

At least once: a delivery leaves the outbox only when a 2xx answer is
recorded. A dispatcher that dies mid-POST leaves its claim to expire, and
another dispatcher sends it again with the same `webhook-id`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from google.protobuf import json_format

from lrod.api import convert
from lrod.clock import Clock, utcnow
from lrod.domain.errors import LrodError
from lrod.domain.operation import Operation
from lrod.domain.webhooks import DeliveryState
from lrod.metrics import Metrics
from lrod.store.protocol import DeliveryClaim, OperationStore, Transition
from lrod.webhooks.config import WebhookConfig
from lrod.webhooks.guard import AddressRefused, GuardedResolver, refused_reason

log = logging.getLogger("lrod.webhooks")

USER_AGENT = "lrod-webhooks/1"
# A delivery whose host has all its slots busy is handed back for this long.
HOST_BUSY_DELAY = timedelta(seconds=0.5)


@dataclass(frozen=True)
class Attempted:
    """How one POST ended: `status` if the receiver answered; `error` the
    reason it did not deliver; `permanent` if retrying cannot help."""

    status: int | None
    error: str | None
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def body_of(op: Operation) -> str:
    """The final Operation in the proto3 JSON mapping, the same on every
    attempt (the delivery's own progress stays out of it)."""
    message = convert.operation(replace(op, delivery=None), op.end_time or op.update_time)
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":"))


class Dispatcher:
    def __init__(
        self,
        store: OperationStore,
        config: WebhookConfig,
        metrics: Metrics | None = None,
        clock: Clock = utcnow,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._settings = config.settings
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._resolver = GuardedResolver(config.rules, resolver)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.lease = timedelta(seconds=self._settings.timeout + 10)

    # -- the store's seam tells of new deliveries in this process ----------
    def transitions_committed(self, transitions: Sequence[Transition]) -> None:
        if any(t.operation.done and t.operation.notify_url for t in transitions):
            self._wake.set()

    def start(self) -> None:
        connector = aiohttp.TCPConnector(
            resolver=self._resolver,
            use_dns_cache=False,
            limit=self._settings.concurrency,
            limit_per_host=self._settings.per_host,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": USER_AGENT},
            trust_env=False,  # no proxy from the environment: it would hide the address
        )
        self._loop_task = asyncio.create_task(self._claim_loop(), name="lrod-webhooks")

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=self._settings.timeout + 1)
        if self._session is not None:
            await self._session.close()

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            free = self._settings.concurrency - len(self._inflight)
            claims: Sequence[DeliveryClaim] = ()
            if free > 0:
                try:
                    claims = await self._store.claim_deliveries(self._clock(), free, self.lease)
                except LrodError as error:
                    log.warning("claiming webhook deliveries failed: %s", error.message)
            for claim in claims:
                task = asyncio.create_task(self._deliver(claim))
                self._inflight.add(task)
                task.add_done_callback(self._done)
            if claims and len(claims) == free:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval)
            self._wake.clear()

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def _deliver(self, claim: DeliveryClaim) -> None:
        host = urlsplit(claim.delivery.url).hostname or ""
        slots = self._hosts.setdefault(host, asyncio.Semaphore(self._settings.per_host))
        try:
            if slots.locked():
                # One slow receiver holds only its own host's slots: hand the
                # delivery back untried instead of waiting on them.
                await self._store.finish_delivery(
                    claim,
                    self._clock(),
                    counted=False,
                    state=DeliveryState.PENDING,
                    next_attempt_time=self._clock() + HOST_BUSY_DELAY,
                )
                return
            async with slots:
                attempted = await self._attempt(claim)
            await self._record(claim, attempted)
        except LrodError as error:
            # The claim expires and another dispatcher (or this one) tries again.
            log.warning("recording a webhook delivery failed: %s", error.message)
        except Exception:
            log.exception("webhook delivery of %s failed unexpectedly", claim.operation.name)

    async def _attempt(self, claim: DeliveryClaim) -> Attempted:
        url = claim.delivery.url
        refused = refused_reason(url, self._config.rules)
        if refused is not None:
            log.warning("webhook target refused: %s", refused, extra={"url": url})
            return Attempted(None, "ADDRESS_NOT_ALLOWED", permanent=True)
        try:
            body = body_of(claim.operation)
        except Exception:
            # The response's message type is unknown to this process (its
            # registry lacks the job type): counted, and retried on the
            # schedule, perhaps by a process that knows it.
            log.exception("cannot encode %s for its webhook", claim.operation.name)
            return Attempted(None, "BODY_UNENCODABLE")
        sent_at = self._clock()
        msg_id = claim.delivery.webhook_id
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": " ".join(
                signer.sign(msg_id, sent_at, body) for signer in self._config.signers
            ),
        }
        assert self._session is not None
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with self._session.post(
                url,
                data=body.encode(),
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout),
            ) as response:
                # Read a little of the answer, never all of it.
                await response.content.read(self._settings.max_response_bytes)
                status = response.status
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, AddressRefused):
                log.warning("webhook target refused: %s", error.os_error, extra={"url": url})
                return Attempted(None, "ADDRESS_NOT_ALLOWED", permanent=True)
            return Attempted(None, "CONNECTION_FAILED")
        except TimeoutError:
            return Attempted(None, "TIMEOUT")
        except (aiohttp.ClientError, OSError):
            return Attempted(None, "CONNECTION_FAILED")
        finally:
            self._metrics.webhook_seconds.observe(loop.time() - started)
        return Attempted(status, None if 200 <= status < 300 else f"HTTP_{status}")

    async def _record(self, claim: DeliveryClaim, attempted: Attempted) -> None:
        now = self._clock()
        op = claim.operation
        fields: dict[str, object] = {
            "operation": op.name,
            "url": claim.delivery.url,
            "webhook_id": claim.delivery.webhook_id,
        }
        attempts = claim.delivery.attempts + 1
        if attempted.delivered:
            state, next_time = DeliveryState.DELIVERED, None
            self._metrics.webhook_attempts.labels("delivered").inc()
        else:
            self._metrics.webhook_attempts.labels(_label(attempted)).inc()
            schedule = self._config.schedule
            next_time = None if attempted.permanent else schedule.next_attempt(attempts, now)
            state = DeliveryState.PENDING if next_time is not None else DeliveryState.FAILED
        written = await self._store.finish_delivery(
            claim,
            now,
            counted=True,
            state=state,
            status=attempted.status,
            error=attempted.error,
            next_attempt_time=next_time,
        )
        if written is None:
            log.warning("a webhook attempt's outcome was refused: its claim expired", extra=fields)
            return
        fields |= {"attempts": attempts, "status": attempted.status, "error": attempted.error}
        if state is DeliveryState.DELIVERED:
            self._metrics.webhook_deliveries.labels("delivered").inc()
            if op.end_time is not None:
                self._metrics.webhook_latency.observe((now - op.end_time).total_seconds())
            log.info("webhook delivered", extra=fields)
        elif state is DeliveryState.FAILED:
            self._metrics.webhook_deliveries.labels("failed").inc()
            log.warning("webhook delivery failed for good", extra=fields)
        else:
            assert next_time is not None
            log.info("webhook attempt failed; will retry", extra=fields | {"retry_at": next_time})


def _label(attempted: Attempted) -> str:
    if attempted.error == "ADDRESS_NOT_ALLOWED":
        return "refused"
    if attempted.status is not None:
        return "http_error"
    if attempted.error == "BODY_UNENCODABLE":
        return "unencodable"
    return "timeout" if attempted.error == "TIMEOUT" else "network_error"
