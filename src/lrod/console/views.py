"""The console's pages and forms: overview, operations, one operation (with
its live event stream), confirmations, login. Every page is rendered on the
server and reads without JavaScript; every form that changes something is
a POST with a CSRF token."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jinja2
from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web import RequestPayloadError
from google.protobuf import any_pb2

from lrod.api.validation import new_job
from lrod.console import model
from lrod.console.access import (
    CSRF_COOKIE,
    CSRF_FIELD,
    SESSION_COOKIE,
    Access,
    NotSignedIn,
    Viewer,
    allow,
    csrf_secret,
    csrf_token,
    csrf_valid,
    set_cookie,
)
from lrod.domain.errors import Code, FieldViolation, InvalidArgument, LrodError
from lrod.domain.operation import OPERATION_PREFIX, Operation
from lrod.domain.states import State
from lrod.domain.submission import LABEL_KEY, LABEL_VALUE
from lrod.http.errors import http_status
from lrod.manager import OperationManager
from lrod.v1 import job_service_pb2

log = logging.getLogger("lrod.console")

MANAGER = web.AppKey("console_manager", OperationManager)
ACCESS = web.AppKey("console_access", Access)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
STOPPING = web.AppKey("console_stopping", asyncio.Event)
VIEWER = web.RequestKey("console_viewer", Viewer)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

PAGE_SIZES = (25, 50, 100)
# Notices after a form, by key: never text from the request.
NOTICES = {
    "cancelled": "Cancel requested.",
    "deleted": "The operation was deleted.",
    "resubmitted": "Submitted again: this is the new operation.",
    "signed-out": "Signed out.",
}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_FORM = 16 * 1024
FORM_READ_SECONDS = 10.0
# How often an idle event stream sends a comment, so that a closed tab is noticed.
KEEPALIVE_SECONDS = 15.0


# -- middleware ----------------------------------------------------------------
@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await _errors_as_pages(request, handler)
    except web.HTTPException as redirect:  # 3xx
        _secure(redirect)
        raise
    _secure(response)
    return response


def _secure(response: web.StreamResponse) -> None:
    if response.prepared:
        return
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")


async def _errors_as_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotSignedIn:
        if request.method == "GET":
            raise web.HTTPSeeOther("/console/login") from None
        return render(request, "error.html", {"title": "Sign in first"}, status=401)
    except LrodError as error:
        status = http_status(int(error.code), error.reason)
        return render(
            request,
            "error.html",
            {"title": _error_title(error), "message": error.message, "reason": error.reason},
            status=status,
        )
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        return render(request, "error.html", {"title": http_error.reason}, status=http_error.status)
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return render(
            request, "error.html", {"title": "Something went wrong on the server"}, status=500
        )


def _error_title(error: LrodError) -> str:
    return {
        Code.NOT_FOUND: "Not found",
        Code.INVALID_ARGUMENT: "Bad request",
        Code.FAILED_PRECONDITION: "Not possible now",
        Code.PERMISSION_DENIED: "Not allowed",
        Code.UNAVAILABLE: "Unavailable",
        Code.UNAUTHENTICATED: "Sign in first",
    }.get(error.code, "Error")


# -- rendering -----------------------------------------------------------------
def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    secret, fresh = csrf_secret(request)
    viewer = request.get(VIEWER)
    page = request.app[TEMPLATES].get_template(template)
    body = page.render(
        **({"notice": None} | context),
        viewer=viewer,
        csrf_field=CSRF_FIELD,
        csrf=csrf_token(secret, request),
        login_required=request.app[ACCESS].login_required,
        now=request.app[MANAGER].clock(),
        path=request.path,
    )
    response = web.Response(text=body, status=status, content_type="text/html")
    if fresh:
        set_cookie(response, request, CSRF_COOKIE, secret)
    return response


async def _viewer(request: web.Request) -> Viewer:
    viewer = await request.app[ACCESS].viewer(request)
    request[VIEWER] = viewer
    return viewer


async def _form(request: web.Request) -> dict[str, str]:
    """A POSTed form of the console's own (URL-encoded UTF-8, small), refused
    unless its CSRF token matches. Anything else is a 4xx page, never a 5xx."""
    if request.content_type != FORM_TYPE:
        raise web.HTTPUnsupportedMediaType(reason="The console takes its own forms only")
    if (request.charset or "utf-8").lower() not in ("utf-8", "utf8"):
        raise web.HTTPBadRequest(reason="Forms must be UTF-8")
    if (request.content_length or 0) > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_FORM, actual_size=request.content_length or 0
        )
    try:
        async with asyncio.timeout(FORM_READ_SECONDS):
            raw = await request.content.read(MAX_FORM + 1)
    except TimeoutError:
        raise web.HTTPRequestTimeout() from None
    except (ContentEncodingError, HttpProcessingError, RequestPayloadError, zlib.error):
        raise web.HTTPBadRequest(reason="The form does not decode") from None
    if len(raw) > MAX_FORM:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_FORM, actual_size=len(raw))
    try:
        pairs = parse_qsl(
            raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise web.HTTPBadRequest(reason="The form does not decode") from None
    fields = dict(pairs)
    if not csrf_valid(request, fields.get(CSRF_FIELD, "")):
        raise web.HTTPForbidden(reason="The form is stale or came from another site; reload it")
    return fields


def _name(request: web.Request) -> str:
    return OPERATION_PREFIX + request.match_info["id"]


def _operation_url(op_id: str, notice: str | None = None) -> str:
    return f"/console/operations/{op_id}" + (f"?notice={notice}" if notice else "")


def _notice(request: web.Request) -> str | None:
    return NOTICES.get(request.query.get("notice", ""))


# -- pages ---------------------------------------------------------------------
async def redirect_home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/console/")


async def overview(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    manager = request.app[MANAGER]
    window = _choice(request.query.get("window"), model.WINDOWS, model.DEFAULT_WINDOW)
    now = manager.clock()
    counts = await manager.store.overview(
        None if viewer.admin else viewer.owner, now - timedelta(minutes=window), now
    )
    workers = await manager.store.workers()
    return render(
        request,
        "overview.html",
        {
            "rows": model.overview_rows(counts, window, now),
            "total": model.overview_rows([model.totals(counts)], window, now)[0],
            "window": window,
            "windows": model.WINDOWS,
            "window_labels": model.WINDOW_LABELS,
            "workers": workers,
            # Host names and pids are for operators: admins, or everyone
            # when authentication is off; other owners see only the counts.
            "worker_details": viewer.admin or not request.app[ACCESS].login_required,
            "job_types": [t.name for t in manager.registry],
        },
    )


def _choice(text: str | None, choices: tuple[int, ...], default: int) -> int:
    if text is not None and text.isdigit() and int(text) in choices:
        return int(text)
    return default


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_filter(raw: str, state: str, job_type: str, labels: str) -> str:
    """The pickers' choices as AIP-160 terms, joined to the typed filter by
    AND: the result goes to the same parser as ListOperations."""
    terms = [raw.strip()] if raw.strip() else []
    problems: list[FieldViolation] = []
    if state:
        if state not in State.__members__:
            problems.append(FieldViolation("state", "is not a state", "INVALID_FILTER"))
        else:
            terms.append(f"metadata.state = {state}")
    if job_type:
        terms.append(f"metadata.job_type = {_quoted(job_type)}")
    for item in labels.replace(",", " ").split():
        key, equals, value = item.partition("=")
        if not equals or not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
            problems.append(FieldViolation("labels", "write labels as key=value", "INVALID_FILTER"))
            continue
        terms.append(f"labels.{key} = {_quoted(value)}")
    if problems:
        raise InvalidArgument.of(problems, reason="INVALID_FILTER")
    return " AND ".join(terms)


@dataclasses.dataclass(frozen=True)
class ListForm:
    filter: str
    state: str
    job_type: str
    labels: str
    order: str
    page_size: int


async def operations(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    manager = request.app[MANAGER]
    query = request.query
    form = ListForm(
        filter=query.get("filter", ""),
        state=query.get("state", ""),
        job_type=query.get("job_type", ""),
        labels=query.get("labels", ""),
        order="oldest" if query.get("order") == "oldest" else "newest",
        page_size=_choice(query.get("page_size"), PAGE_SIZES, PAGE_SIZES[0]),
    )
    error: LrodError | None = None
    page = None
    try:
        text = build_filter(form.filter, form.state, form.job_type, form.labels)
        page = await manager.list(
            viewer.caller,
            text,
            form.page_size,
            query.get("page_token", ""),
            oldest_first=form.order == "oldest",
        )
    except InvalidArgument as invalid:
        error = invalid
    chosen = {k: str(v) for k, v in dataclasses.asdict(form).items() if v}
    next_url = None
    if page is not None and page.next_page_token:
        next_url = "?" + urlencode(chosen | {"page_token": page.next_page_token})
    flipped = "newest" if form.order == "oldest" else "oldest"
    return render(
        request,
        "operations.html",
        {
            "form": form,
            "operations": page.operations if page is not None else [],
            "error": error,
            "next_url": next_url,
            "first_url": "?" + urlencode(chosen) if query.get("page_token") else None,
            "sort_url": "?" + urlencode(chosen | {"order": flipped}),
            "states": [s.value for s in State],
            "job_types": [t.name for t in manager.registry],
            "page_sizes": PAGE_SIZES,
            "notice": _notice(request),
            "percent": model.percent,
        },
        status=400 if error is not None else 200,
    )


async def operation(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    manager = request.app[MANAGER]
    op = await manager.get(viewer.caller, _name(request))
    attempts = await manager.store.attempts(op.id)
    return render(
        request,
        "operation.html",
        {
            "op": op,
            "attempts": attempts,
            "percent": model.percent(op),
            "eta": model.short_duration(model.eta(op)) if model.eta(op) else "",
            "input_json": model.payload_json(op.input),
            "response_json": model.payload_json(op.result) if op.done else "",
            "error_json": model.error_json(op.error) if op.done else "",
            "last_error_json": model.error_json(op.last_attempt_error),
            "labels_json": json.dumps(dict(op.labels)),
            "notice": _notice(request),
            "resubmit_id": str(uuid.uuid4()),
            "can_resubmit": manager.registry.get(op.job_type) is not None,
        },
    )


async def events(request: web.Request) -> web.StreamResponse:
    """The operation's live part as server-sent events: one `data:` line of
    JSON per change, until it is done (or the console stops)."""
    viewer = await _viewer(request)
    manager = request.app[MANAGER]
    stopping = request.app[STOPPING]
    # Closed on every way out, so that the subscription and the viewer's
    # concurrent-wait quota are given back at once.
    async with contextlib.aclosing(manager.watch(viewer.caller, _name(request))) as changes:
        first = await anext(changes)  # not found, malformed: an error page, not a stream
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        _secure(response)
        await response.prepare(request)
        await response.write(_event(first))
        if first.done:
            return response
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await _stream(response, changes, stop)
        except ConnectionResetError:
            pass  # the page was closed
        finally:
            stop.cancel()
    return response


async def _stream(
    response: web.StreamResponse, changes: AsyncIterator[Operation], stop: asyncio.Future[Any]
) -> None:
    while True:
        step = asyncio.ensure_future(anext(changes))
        try:
            while not step.done():
                await asyncio.wait(
                    {step, stop}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                if stop.done():
                    return
                if not step.done():
                    await response.write(b": keepalive\n\n")
        finally:
            if not step.done():
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)
        try:
            op = step.result()
        except StopAsyncIteration:
            return
        await response.write(_event(op))
        if op.done:
            return


def _event(op: Operation) -> bytes:
    return f"data: {json.dumps(model.live(op))}\n\n".encode()


# -- forms that change things --------------------------------------------------
ACTIONS = {
    "cancel": ("Cancel this operation?", "Cancel the operation"),
    "delete": ("Delete this operation?", "Delete the operation"),
}


async def confirm(request: web.Request) -> web.Response:
    """The confirmation page of cancel and delete (works without JavaScript)."""
    viewer = await _viewer(request)
    action = request.match_info["action"]
    op = await request.app[MANAGER].get(viewer.caller, _name(request))
    question, button = ACTIONS[action]
    return render(
        request,
        "confirm.html",
        {"op": op, "action": action, "question": question, "button": button},
    )


async def cancel(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    await _form(request)
    allow(viewer, "CancelOperation")
    op = await request.app[MANAGER].cancel(viewer.caller, _name(request))
    raise web.HTTPSeeOther(_operation_url(op.id, "cancelled"))


async def delete(request: web.Request) -> web.StreamResponse:
    viewer = await _viewer(request)
    await _form(request)
    allow(viewer, "DeleteOperation")
    await request.app[MANAGER].delete(viewer.caller, _name(request))
    raise web.HTTPSeeOther("/console/operations?notice=deleted")


async def resubmit(request: web.Request) -> web.StreamResponse:
    """Submit again with the same input, labels, priority and timeout (and
    webhook target, for the owner), as a new operation of the viewer's. The
    form's request_id makes a double click one submit."""
    viewer = await _viewer(request)
    form = await _form(request)
    allow(viewer, "Submit")
    manager = request.app[MANAGER]
    op = await manager.get(viewer.caller, _name(request))
    submit = job_service_pb2.SubmitRequest(
        job_type=op.job_type,
        input=any_pb2.Any(type_url=op.input.type_url, value=op.input.value),
        labels=dict(op.labels),
        priority=op.priority,
        request_id=form.get("request_id", ""),
    )
    if op.timeout is not None:
        submit.timeout.FromTimedelta(op.timeout)
    if op.notify_url and op.owner == viewer.owner:
        submit.notification.url = op.notify_url
    now = manager.clock()
    created = await manager.submit(
        new_job(submit, manager.registry, viewer.owner, now, manager.webhook_rules)
    )
    raise web.HTTPSeeOther(_operation_url(created.id, "resubmitted"))


# -- signing in ----------------------------------------------------------------
async def login_page(request: web.Request) -> web.StreamResponse:
    if not request.app[ACCESS].login_required:
        raise web.HTTPSeeOther("/console/")
    return render(request, "login.html", {"failed": False, "notice": _notice(request)})


async def login(request: web.Request) -> web.StreamResponse:
    form = await _form(request)
    access = request.app[ACCESS]
    viewer = await access.sign_in(request, form.get("token", "").strip())
    if viewer is None:
        return render(request, "login.html", {"failed": True, "notice": None}, status=401)
    response = web.HTTPSeeOther("/console/")
    set_cookie(response, request, SESSION_COOKIE, form["token"].strip())
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    await _form(request)
    response = web.HTTPSeeOther("/console/login?notice=signed-out")
    response.del_cookie(SESSION_COOKIE, path="/console")
    raise response


async def not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound(reason="No such page")
