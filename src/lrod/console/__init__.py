"""The operator's web console, served at /console on the HTTP door's address
from the same manager and store (docs/http-mapping.md, "The console")."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import jinja2
from aiohttp import web

from lrod.console import model, views
from lrod.console.access import Access
from lrod.manager import OperationManager

PREFIX = "/console"
_HERE = Path(__file__).parent
# The stylesheet and the script under /static, with their media types.
ASSETS = {"console.css": "text/css", "console.js": "text/javascript"}


def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = lambda moment: (
        moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC" if moment is not None else "-"
    )
    env.filters["iso"] = lambda moment: moment.isoformat() if moment is not None else ""
    env.filters["duration"] = model.short_duration
    return env


def build_console(manager: OperationManager, access: Access | None = None) -> web.Application:
    app = web.Application(middlewares=[views.security_headers])
    app[views.MANAGER] = manager
    app[views.ACCESS] = access or Access()
    app[views.TEMPLATES] = templates()
    app[views.STOPPING] = asyncio.Event()

    async def _stop_streams(_app: web.Application) -> None:
        app[views.STOPPING].set()

    app.on_shutdown.append(_stop_streams)
    ops = "/operations/{id:[A-Za-z0-9_-]+}"
    app.router.add_get("/", views.overview)
    app.router.add_get("/operations", views.operations)
    app.router.add_get(ops, views.operation)
    app.router.add_get(ops + "/events", views.events)
    app.router.add_get(ops + "/{action:cancel|delete}", views.confirm)
    app.router.add_post(ops + "/cancel", views.cancel)
    app.router.add_post(ops + "/delete", views.delete)
    app.router.add_post(ops + "/resubmit", views.resubmit)
    app.router.add_get("/login", views.login_page)
    app.router.add_post("/login", views.login)
    app.router.add_post("/logout", views.logout)
    app.router.add_get("/static/{name}", _assets())
    app.router.add_route("*", "/{tail:.*}", views.not_found)
    return app


def _assets() -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """The /static handler: the assets read once, answered from memory.

    aiohttp's static route opens each file in a thread; a request cancelled
    while it does (the browser left the page, and handler_cancellation is on)
    drops the open file, which then leaks until collected. Answering bytes
    opens nothing per request. Caching stays off (no-store), as for every
    console page."""
    loaded = {
        name: ((_HERE / "static" / name).read_bytes(), media) for name, media in ASSETS.items()
    }

    async def serve(request: web.Request) -> web.StreamResponse:
        found = loaded.get(request.match_info["name"])
        if found is None:
            return await views.not_found(request)
        body, media = found
        return web.Response(body=body, content_type=media, charset="utf-8")

    return serve


def mount(app: web.Application, console: web.Application) -> None:
    """Serve `console` at /console/ on the HTTP door's app."""
    app.router.add_get(PREFIX, views.redirect_home)
    app.add_subapp(PREFIX, console)
