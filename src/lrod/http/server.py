"""Serve the HTTP front door on the event loop the gRPC server runs on, with
bounds against slow and idle clients: a connection that does not complete a
request within `idle_timeout` is closed, a body must arrive within
`read_timeout` (lrod.http.app), and beyond `max_connections` open connections
a new one is answered 503 and closed."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from lrod.auth.seam import ANONYMOUS_ONLY, Authentication
from lrod.console import build_console, mount
from lrod.console.access import Access
from lrod.domain.errors import ERROR_DOMAIN
from lrod.http.app import build_app
from lrod.http.guard import default_allowed_hosts
from lrod.listen import split_address
from lrod.manager import OperationManager
from lrod.settings import HttpSettings

log = logging.getLogger("lrod.http")

_TOO_MANY_BODY = json.dumps(
    {
        "error": {
            "code": 503,
            "message": "Too many connections; try again shortly.",
            "status": "UNAVAILABLE",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "TOO_MANY_CONNECTIONS",
                    "domain": ERROR_DOMAIN,
                }
            ],
        }
    }
).encode()
_TOO_MANY = (
    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_TOO_MANY_BODY), _TOO_MANY_BODY)
)


class _ClientsFault(logging.Filter):
    """aiohttp answers a request it cannot parse (a body whose
    Content-Encoding does not decode, a malformed request line) with 400
    itself, and logs it at ERROR with a traceback: the fault is the client's,
    so keep it out of the log (at DEBUG on lrod.http instead)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            log.debug("refused a request aiohttp could not read: %s", error)
            return False
        return True


_CLIENTS_FAULT = _ClientsFault()
# How long a stop waits for the requests in progress before it cancels them:
# the gRPC server's grace (app.Service.stop). aiohttp's default, a minute,
# held every stop for as long as a watch of an unchanging operation (or a
# long wait) was open.
STOP_GRACE = 1.0


class HttpFrontDoor:
    def __init__(
        self,
        manager: OperationManager,
        address: str,
        *,
        authentication: Authentication = ANONYMOUS_ONLY,
        allowed_hosts: frozenset[str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        console: bool = False,
        console_access: Access | None = None,
        http: HttpSettings | None = None,
    ) -> None:
        self._reuse_port = reuse_port
        self.settings = http or HttpSettings()
        server_log = logging.getLogger("aiohttp.server")
        if _CLIENTS_FAULT not in server_log.filters:
            server_log.addFilter(_CLIENTS_FAULT)
        self._host, self._port = split_address(address)
        hosts = allowed_hosts or default_allowed_hosts(self._host)
        self.app = build_app(manager, self.settings, authentication, hosts)
        if console:
            mount(self.app, build_console(manager, console_access))
        # handler_cancellation: a request whose client hung up is cancelled
        # (aiohttp leaves it running otherwise), so that an abandoned watch,
        # wait or console event stream gives its subscription and its
        # caller's concurrent-wait quota back at once, not when the
        # operation next changes. What a cancelled handler was writing is
        # shielded in the store (a Submit whose client left commits or not;
        # it was never acknowledged).
        self._runner = web.AppRunner(
            self.app,
            access_log=None,
            keepalive_timeout=self.settings.idle_timeout,
            handler_cancellation=True,
            shutdown_timeout=STOP_GRACE,
        )
        self._ssl = ssl_context
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        _bound_connections(server, self.settings.max_connections)
        site = web.TCPSite(
            self._runner,
            self._host,
            self._port,
            reuse_port=self._reuse_port,
            ssl_context=self._ssl,
        )
        await site.start()
        listening = site._server
        assert listening is not None
        sockets = getattr(listening, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        await self._runner.cleanup()


def _bound_connections(server: web.Server, limit: int) -> None:
    """Answer 503 and close a connection beyond `limit` open ones."""
    made = server.connection_made

    def connection_made(handler: Any, transport: asyncio.Transport) -> None:
        made(handler, transport)
        if len(server.connections) > limit:
            log.warning("HTTP connections at their bound (%d): refusing one", limit)
            transport.write(_TOO_MANY)
            transport.close()

    server.connection_made = connection_made  # type: ignore[method-assign]
