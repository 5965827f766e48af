"""A real webhook receiver on 127.0.0.1 (aiohttp) that verifies every
signature with the Standard Webhooks library, as a customer's would."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook

# Two secrets, as during a rotation: the server signs with both, each
# receiver side checks with one of them.
SECRET_OLD = "whsec_" + base64.b64encode(b"the old secret of lrod tests!").decode()
SECRET_NEW = "whsec_" + base64.b64encode(b"the new secret of lrod tests!").decode()
SECRETS = f"{SECRET_OLD},{SECRET_NEW}"


@dataclass
class Received:
    path: str
    webhook_id: str
    payload: dict[str, Any]
    at: float  # the loop's clock


@dataclass
class Receiver:
    """Routes: /ok (200), /fail (500 always), /flaky/N (503 for the first N
    calls per webhook-id, then 200), /slow (answers after 5 s), /redirect
    (302 to the cloud metadata address). Every call is verified first."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    # Calls of one webhook-id being handled now, and the most seen at once.
    concurrent: Counter[str] = field(default_factory=Counter)
    most_concurrent: int = 0
    unverified: int = 0
    hold: float = 0.0  # seconds every call waits before answering
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _runner: web.AppRunner | None = None
    # Set at stop: a /slow call still being answered ends then (its caller
    # timed out long before), so that stopping does not wait out its 5 s.
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def start(self, port: int = 0) -> None:
        self._stopping.clear()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def release(self) -> None:
        """Let /slow calls under way (and later ones) answer now."""
        self._stopping.set()

    async def stop(self) -> None:
        self.release()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def of(self, webhook_id: str) -> list[Received]:
        return [r for r in self.received if r.webhook_id == webhook_id]

    async def wait_for(self, predicate: Any, seconds: float = 20) -> None:
        async with asyncio.timeout(seconds):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        try:
            for secret in (SECRET_OLD, SECRET_NEW):
                payload = Webhook(secret).verify(body, headers)
        except Exception:
            self.unverified += 1
            self.changed.set()
            return web.Response(status=400)
        webhook_id = request.headers["webhook-id"]
        self.concurrent[webhook_id] += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent[webhook_id])
        try:
            if self.hold:
                await asyncio.sleep(self.hold)
            path = request.path
            self.calls[webhook_id] += 1
            loop = asyncio.get_running_loop()
            self.received.append(Received(path, webhook_id, payload, loop.time()))
            self.changed.set()
            if path == "/fail":
                return web.Response(status=500, text="no")
            if path.startswith("/flaky/") and self.calls[webhook_id] <= int(path.split("/")[2]):
                return web.Response(status=503)
            if path == "/slow":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 5)
            if path == "/redirect":
                raise web.HTTPFound("http://169.254.169.254/latest/meta-data/")
            return web.Response(text=json.dumps({"ok": True}))
        finally:
            self.concurrent[webhook_id] -= 1
