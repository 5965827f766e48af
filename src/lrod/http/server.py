"""Serve the HTTP front door on the event loop the gRPC server runs on."""

from __future__ import annotations

from aiohttp import web

from lrod.console import build_console, mount
from lrod.console.access import Access
from lrod.http.app import build_app
from lrod.manager import OperationManager


class HttpFrontDoor:
    def __init__(
        self,
        manager: OperationManager,
        address: str,
        *,
        reuse_port: bool = False,
        console: bool = False,
        console_access: Access | None = None,
    ) -> None:
        self._reuse_port = reuse_port
        app = build_app(manager)
        if console:
            mount(app, build_console(manager, console_access))
        self._runner = web.AppRunner(app, access_log=None)
        self._host, _, port = address.rpartition(":")
        self._port = int(port)
        self.port: int | None = None

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, reuse_port=self._reuse_port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self._port

    async def stop(self) -> None:
        await self._runner.cleanup()
