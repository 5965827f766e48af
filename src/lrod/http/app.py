"""Routes of the HTTP/JSON front door (docs/http-mapping.md).

The paths are the google.api.http annotations of the protos; the responses
speak the seed's shape: Submit answers 202 with Location and Retry-After, the
status URL answers 303 to the result once done and 410 once expired, an
Idempotency-Key header is the request_id, and errors are AIP-193 JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import zlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import datetime
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError, HttpProcessingError
from aiohttp.web import RequestPayloadError
from google.longrunning import operations_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

from lrod.api import convert
from lrod.api.validation import duration_seconds, new_job, new_jobs
from lrod.auth.seam import ANONYMOUS_ONLY, Authentication
from lrod.domain.errors import (
    ERROR_DOMAIN,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    LrodError,
)
from lrod.domain.operation import OPERATION_PREFIX, Operation, poll_after
from lrod.http.errors import error_body, error_response, http_status
from lrod.http.guard import (
    ALLOWED_HOSTS,
    AUTHENTICATION,
    authenticate,
    check_content_type,
    check_host,
    default_allowed_hosts,
    principal_of,
)
from lrod.http.urls import PublicUrls
from lrod.manager import OperationManager
from lrod.settings import HttpSettings
from lrod.v1 import job_service_pb2

log = logging.getLogger("lrod.http")

MAX_BODY = 4 * 1024 * 1024
_MANAGER = web.AppKey("manager", OperationManager)
_URLS = web.AppKey("urls", PublicUrls)
_UNREADABLE = web.RequestKey("unreadable_body", bool)
# Bodies are JSON in UTF-8 (RFC 8259); other charsets are refused, not guessed.
_CHARSETS = frozenset({"utf-8", "utf8", "us-ascii"})
_PAGE_SIZE = re.compile(r"-?[0-9]{1,10}")
_ID = r"{id:[^/:]+}"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(
    manager: OperationManager,
    settings: HttpSettings | None = None,
    authentication: Authentication = ANONYMOUS_ONLY,
    allowed_hosts: frozenset[str] | None = None,
) -> web.Application:
    """`allowed_hosts`: the names the Host header may carry (default: the
    loopback names); every route goes through the guard's checks and the
    authentication seam before it runs."""
    app = web.Application(
        middlewares=[_errors, check_host, check_content_type, authenticate],
        client_max_size=MAX_BODY,
    )
    app[_MANAGER] = manager
    app[_URLS] = PublicUrls.of(settings or HttpSettings())
    app[AUTHENTICATION] = authentication
    app[ALLOWED_HOSTS] = allowed_hosts if allowed_hosts is not None else default_allowed_hosts("")
    app.router.add_post("/v1/operations:submit", submit)
    app.router.add_post("/v1/operations:batchSubmit", batch_submit)
    app.router.add_get("/v1/operations", list_operations)
    app.router.add_get(f"/v1/operations/{_ID}", get_operation)
    app.router.add_get(f"/v1/operations/{_ID}:result", get_result)
    app.router.add_get(f"/v1/operations/{_ID}:watch", watch)
    app.router.add_post(f"/v1/operations/{_ID}:cancel", cancel)
    app.router.add_post(f"/v1/operations/{_ID}:wait", wait)
    app.router.add_delete(f"/v1/operations/{_ID}", delete)
    app.router.add_get("/v1/jobTypes", job_types)
    return app


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if request.body_exists and request.path.startswith("/v1/"):
            # Read (and decode) every body of the API's routes here, even of one
            # that ignores it: left unread, aiohttp drains it after the answer,
            # and a body that does not decode then ends in a logged traceback.
            await _raw_body(request)
        return await handler(request)
    except web.HTTPException as http_error:
        if http_error.status < 400:
            raise
        return _route_error(http_error)
    except LrodError as error:
        response = error_response(error)
        if request.get(_UNREADABLE):
            # What is left of the body cannot be read: end the connection.
            response.force_close()
        return response
    except ConnectionError:
        # The client hung up (a slow one, or one that gave up): no one is left
        # to read an answer; this one only ends the request quietly.
        log.debug("client left during %s %s", request.method, request.path)
        return web.Response(status=499)
    except Exception as error:
        log.exception("unexpected error in %s %s", request.method, request.path)
        return error_response(error)


def _route_error(http_error: web.HTTPException) -> web.Response:
    """aiohttp's own errors (no such path, method not allowed) as AIP-193 JSON."""
    status, reason = {
        404: ("NOT_FOUND", "NO_SUCH_PATH"),
        405: ("UNIMPLEMENTED", "METHOD_NOT_ALLOWED"),
        413: ("RESOURCE_EXHAUSTED", "REQUEST_TOO_LARGE"),
    }.get(http_error.status, ("INVALID_ARGUMENT", "BAD_REQUEST"))
    detail = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": reason,
        "domain": ERROR_DOMAIN,
    }
    body = {
        "error": {
            "code": http_error.status,
            "message": http_error.reason,
            "status": status,
            "details": [detail],
        }
    }
    return web.json_response(body, status=http_error.status)


def _json(message: Message, status: int = 200, **headers: str) -> web.Response:
    return web.json_response(
        json_format.MessageToDict(message), status=status, headers=headers or None
    )


def _bad_body(description: str, reason: str = "INVALID_JSON") -> InvalidArgument:
    return InvalidArgument.of([FieldViolation("body", description, reason)], reason=reason)


async def _body(request: web.Request) -> str:
    """The request's body as text: within the read timeout, decompressed
    (aiohttp does), and UTF-8."""
    charset = (request.charset or "utf-8").lower()
    if charset not in _CHARSETS:
        raise _bad_body(
            f"charset {charset[:40]!r} is not supported; send UTF-8", "UNSUPPORTED_CHARSET"
        )
    raw = await _raw_body(request)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_body("the body is not UTF-8", "UNDECODABLE_BODY") from None


async def _raw_body(request: web.Request) -> bytes:
    """The body's bytes (aiohttp keeps them for a second read), within the
    read timeout, decompressed by its Content-Encoding."""
    try:
        async with asyncio.timeout(request.config_dict[_URLS].read_timeout):
            return await request.read()
    except TimeoutError:
        raise web.HTTPRequestTimeout() from None
    except (ContentEncodingError, HttpProcessingError, RequestPayloadError, zlib.error) as error:
        log.debug("undecodable body: %s", error)
        # The stream is at its end for aiohttp (no lingering read of the rest,
        # which would raise again), and the connection closes after the answer.
        request.content.feed_eof()
        request[_UNREADABLE] = True
        raise _bad_body(
            "the body does not decode with its Content-Encoding", "UNDECODABLE_BODY"
        ) from None


async def _parse(request: web.Request, message: Message) -> Message:
    text = await _body(request)
    try:
        json_format.Parse(text or "{}", message)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as error:
        raise InvalidArgument.of(
            [
                FieldViolation(
                    "body", f"not a valid {message.DESCRIPTOR.name}: {error}"[:300], "INVALID_JSON"
                )
            ],
            reason="INVALID_JSON",
        ) from None
    return message


def _name(request: web.Request) -> str:
    return OPERATION_PREFIX + request.match_info["id"]


def _retry_after(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def _idempotency_key(request: web.Request, body_request_id: str) -> str:
    """The request_id: the Idempotency-Key header, or the body's."""
    key = request.headers.get("Idempotency-Key")
    if key and body_request_id and key != body_request_id:
        raise InvalidArgument.of(
            [
                FieldViolation(
                    "Idempotency-Key", "differs from the body's requestId", "CONFLICTING_REQUEST_ID"
                )
            ]
        )
    return key or body_request_id


async def submit(request: web.Request) -> web.Response:
    manager = request.app[_MANAGER]
    body = await _parse(request, job_service_pb2.SubmitRequest())
    assert isinstance(body, job_service_pb2.SubmitRequest)
    manager.quotas.check_request_size(body.ByteSize())
    body.request_id = _idempotency_key(request, body.request_id)
    now = manager.clock()
    op = await manager.submit(
        new_job(body, manager.registry, principal_of(request).owner, now, manager.webhook_rules)
    )
    wait = poll_after(op, now)
    headers = {"Location": request.config_dict[_URLS].absolute(request, f"/v1/{op.name}")}
    if wait is not None:
        headers["Retry-After"] = _retry_after(wait.total_seconds())
    return _json(convert.operation(op, now), 202 if not op.done else 200, **headers)


async def batch_submit(request: web.Request) -> web.Response:
    """Many jobs at once, all or none: 202 with one operation per request, in
    order (200 if all of them are done: a repeat of a finished batch)."""
    manager = request.app[_MANAGER]
    body = await _parse(request, job_service_pb2.BatchSubmitRequest())
    manager.quotas.check_request_size(body.ByteSize())
    assert isinstance(body, job_service_pb2.BatchSubmitRequest)
    body.request_id = _idempotency_key(request, body.request_id)
    now = manager.clock()
    jobs = new_jobs(body, manager.registry, principal_of(request).owner, now, manager.webhook_rules)
    stored = await manager.batch_submit(jobs, body.request_id or None)
    return web.json_response(
        {"operations": _operations_json(stored, now)},
        status=200 if all(op.done for op in stored) else 202,
    )


def _operations_json(ops: Sequence[Operation], now: datetime) -> list[dict[str, Any]]:
    """Each operation's JSON (MessageToDict of convert.operation), converted
    once per shape (convert.shape_of: alike but for the name) as
    convert.batch_response does: a batch's members mostly differ only in
    their ids."""
    shown: dict[Hashable, dict[str, Any]] = {}
    bodies: list[dict[str, Any]] = []
    for op in ops:
        shape = convert.shape_of(op)
        template = shown.get(shape) if shape is not None else None
        if template is not None:
            bodies.append({**template, "name": op.name})
            continue
        body = json_format.MessageToDict(convert.operation(op, now))
        if shape is not None:
            shown[shape] = body
        bodies.append(body)
    return bodies


async def get_operation(request: web.Request) -> web.Response:
    """The status URL: 200 + Retry-After while running; 303 to the result
    once done (unless ?view=operation, for REST clients of google.longrunning)."""
    manager = request.app[_MANAGER]
    op = await manager.get(principal_of(request), _name(request))
    now = manager.clock()
    body = convert.operation(op, now)
    if op.done and request.query.get("view") != "operation":
        return _json(
            body,
            303,
            Location=request.config_dict[_URLS].absolute(request, f"/v1/{op.name}:result"),
        )
    wait = poll_after(op, now)
    if wait is None:
        return _json(body)
    return _json(body, 200, **{"Retry-After": _retry_after(wait.total_seconds())})


async def get_result(request: web.Request) -> web.Response:
    """The finished resource: the job's response, or its error as AIP-193 JSON."""
    manager = request.app[_MANAGER]
    op = convert.operation(
        await manager.get(principal_of(request), _name(request)), manager.clock()
    )
    if not op.done:
        raise FailedPrecondition(
            "The operation is not done yet; poll its status URL.",
            reason="OPERATION_NOT_DONE",
            metadata={"name": op.name},
        )
    if op.HasField("error"):
        body = error_body(op.error)
        return web.json_response(body, status=http_status(op.error.code))
    return web.json_response(json_format.MessageToDict(op.response))


async def list_operations(request: web.Request) -> web.Response:
    manager = request.app[_MANAGER]
    query = request.query
    size_text = query.get("pageSize", query.get("page_size", "0"))
    if not _PAGE_SIZE.fullmatch(size_text) or not -(2**31) <= int(size_text) < 2**31:
        raise InvalidArgument.of(
            [FieldViolation("pageSize", "must be a 32-bit integer", "INVALID_PAGE_SIZE")]
        )
    page = await manager.list(
        principal_of(request),
        query.get("filter", ""),
        int(size_text),
        query.get("pageToken", query.get("page_token", "")),
    )
    now = manager.clock()
    return _json(
        operations_pb2.ListOperationsResponse(
            operations=[convert.operation(op, now) for op in page.operations],
            next_page_token=page.next_page_token,
        )
    )


async def cancel(request: web.Request) -> web.Response:
    await request.app[_MANAGER].cancel(principal_of(request), _name(request))
    return web.json_response({})


async def delete(request: web.Request) -> web.Response:
    await request.app[_MANAGER].delete(principal_of(request), _name(request))
    return web.json_response({})


async def wait(request: web.Request) -> web.Response:
    manager = request.app[_MANAGER]
    body = await _parse(request, operations_pb2.WaitOperationRequest())
    assert isinstance(body, operations_pb2.WaitOperationRequest)
    timeout = duration_seconds(body.timeout) if body.HasField("timeout") else None
    if body.HasField("timeout") and timeout is None:
        raise InvalidArgument.of(
            [FieldViolation("timeout", "is not a valid duration", "INVALID_TIMEOUT")]
        )
    if timeout is not None and timeout < 0:
        raise InvalidArgument.of(
            [FieldViolation("timeout", "must not be negative", "INVALID_TIMEOUT")]
        )
    op = await manager.wait(principal_of(request), _name(request), timeout, None)
    return _json(convert.operation(op, manager.clock()))


async def watch(request: web.Request) -> web.StreamResponse:
    """The operation as newline-delimited JSON, one line per change, ending
    after the done operation."""
    manager = request.app[_MANAGER]
    # Closed on every way out (a client hanging up included), so that the
    # subscription and the caller's concurrent-wait quota are given back at
    # once, not when the generator is collected.
    async with contextlib.aclosing(manager.watch(principal_of(request), _name(request))) as changes:
        first = await anext(changes)  # errors (not found, malformed) before any byte
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        await response.write(_line(convert.operation(first, manager.clock())))
        async for op in changes:
            await response.write(_line(convert.operation(op, manager.clock())))
    await response.write_eof()
    return response


def _line(message: Message) -> bytes:
    return (json.dumps(json_format.MessageToDict(message)) + "\n").encode()


async def job_types(request: web.Request) -> web.Response:
    manager = request.app[_MANAGER]
    return _json(
        job_service_pb2.ListJobTypesResponse(
            job_types=[convert.job_type(t) for t in manager.registry]
        )
    )
