"""One wrapper per method, built once at start-up, for every service on the port.

Each method handler is wrapped here exactly once, when the server is built,
by one function that:

- decodes leniently: bytes that do not decode become INVALID_ARGUMENT with
  ErrorInfo (reason UNDECODABLE_REQUEST) instead of grpcio's UNKNOWN;
- runs the method's authentication step, if it has one (see `AuthStep`);
- maps every exception to a google.rpc.Status with ErrorInfo (`errors.py`'s
  table), never a traceback or internal text;
- times the call and counts its status code by method (Prometheus).

This replaces server interceptors, which grpc.aio runs for every call and
which rebuilt each method's handler per call. The wrapped handlers are served
by one dictionary lookup per call (`_Methods`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_status import rpc_status

from lrod.api.errors import internal_status, status_of
from lrod.api.identity import CALLER, Principal
from lrod.domain.errors import FieldViolation, InvalidArgument, LrodError
from lrod.metrics import Metrics

log = logging.getLogger("lrod.api")

# The authentication step of one method: awaited before the servicer runs,
# with the call's context (metadata: context.invocation_metadata(), peer:
# context.peer() / context.auth_context()). It returns the principal, which
# the wrapper sets as the call's caller (lrod.api.identity.CALLER), or raises
# an LrodError (Unauthenticated, PermissionDenied), which the wrapper answers
# with its status and ErrorInfo.
AuthStep = Callable[[grpc.aio.ServicerContext], Awaitable[Principal]]
# Asked once per method at start-up with the method's full name
# ("/lrod.v1.JobService/Submit"): that method's step, or None when the
# method needs none (health, reflection).
AuthPolicy = Callable[[str], AuthStep | None]


def no_authentication(method: str) -> AuthStep | None:
    return None


class _Undecodable:
    """Stands in for a request message that did not decode."""


UNDECODABLE = _Undecodable()


def undecodable() -> InvalidArgument:
    return InvalidArgument.of(
        [FieldViolation("request", "the request message does not decode", "UNDECODABLE_REQUEST")],
        reason="UNDECODABLE_REQUEST",
    )


def _lenient(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def safe(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            return UNDECODABLE

    return safe


async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if request is UNDECODABLE:
            raise undecodable()
        yield request


_BY_NUMBER: dict[int, str] = {status.value[0]: status.name for status in grpc.StatusCode}


def _context_code(context: grpc.aio.ServicerContext, default: str) -> str:
    """The status set on the context (an abort sets it), else `default`."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int) and code != 0:
        return _BY_NUMBER.get(code, "UNKNOWN")
    return default


def _passthrough(serialize: Callable[[Any], bytes] | None) -> Callable[[Any], bytes] | None:
    """The response serializer, letting bytes through: a servicer may answer
    a message it already holds serialized (convert.OperationBytes)."""
    if serialize is None:
        return None

    def serialized(response: Any) -> bytes:
        if response.__class__ is bytes:
            return response
        return serialize(response)

    return serialized


class _Call:
    """What every wrapper of one method shares: its name, its metrics and
    its authentication step."""

    __slots__ = ("_count", "_histogram", "auth", "method")

    def __init__(self, method: str, metrics: Metrics, auth: AuthStep | None) -> None:
        self.method = method
        self.auth = auth
        name = method.lstrip("/")
        self._histogram = metrics.rpc_duration.labels(name)
        # Counters by code, made on first use: the codes are a closed set.
        self._count = _CounterByCode(metrics, name)

    def done(self, code: str, start: float) -> None:
        self._histogram.observe(time.perf_counter() - start)
        self._count[code].inc()

    def answer(self, context: grpc.aio.ServicerContext, error: Exception) -> tuple[str, Any]:
        """The code a call that raised `error` ends with, and the status to
        abort it with (None: context.abort() already ran and set it)."""
        if isinstance(error, grpc.aio.AbortError):
            return _context_code(context, "UNKNOWN"), None
        if isinstance(error, LrodError):
            status = status_of(error)
        else:
            log.error("unexpected error in %s", self.method, exc_info=error)
            status = internal_status()
        return _BY_NUMBER.get(status.code, "UNKNOWN"), rpc_status.to_status(status)


class _CounterByCode(dict[str, Any]):
    def __init__(self, metrics: Metrics, method: str) -> None:
        super().__init__()
        self._metrics = metrics
        self._method = method

    def __missing__(self, code: str) -> Any:
        child = self._metrics.rpcs.labels(self._method, code)
        self[code] = child
        return child


def _caller_left(context: grpc.aio.ServicerContext, error: Exception) -> bool:
    """The call ended before its answer (the caller's deadline passed, it hung
    up): no one is left to answer, and aborting a finished call only logs a
    traceback. An unexpected error is still logged, as a bug."""
    if not context.done() or isinstance(error, grpc.aio.AbortError):
        return False
    if not isinstance(error, LrodError):
        log.error("unexpected error in a call whose caller left", exc_info=error)
    return True


def _unary_response(behaviour: Callable[..., Any], call: _Call, streamed: bool) -> Any:
    """A handler that returns one response (or, for `streamed`, writes its
    responses with context.write() and returns)."""
    auth = call.auth

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        code = "OK"
        try:
            if streamed:
                request = _checked(request)
            elif request is UNDECODABLE:
                raise undecodable()
            if auth is not None:
                CALLER.set(await auth(context))
            response = await behaviour(request, context)
            code = _context_code(context, "OK")
            return response
        except asyncio.CancelledError:
            code = "CANCELLED"
            raise
        except Exception as error:
            if _caller_left(context, error):
                code = "CANCELLED"
                raise asyncio.CancelledError from None
            code, status = call.answer(context, error)
            if status is not None:
                await context.abort_with_status(status)
            raise
        finally:
            call.done(code, start)

    return handle


def _streaming_response(behaviour: Callable[..., Any], call: _Call, streamed: bool) -> Any:
    """A handler that yields its responses (an async generator)."""
    auth = call.auth

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        start = time.perf_counter()
        code = "OK"
        try:
            if streamed:
                request = _checked(request)
            elif request is UNDECODABLE:
                raise undecodable()
            if auth is not None:
                CALLER.set(await auth(context))
            async for response in behaviour(request, context):
                yield response
            code = _context_code(context, "OK")
        except (asyncio.CancelledError, GeneratorExit):
            code = "CANCELLED"
            raise
        except Exception as error:
            if _caller_left(context, error):
                code = "CANCELLED"
                return
            code, status = call.answer(context, error)
            if status is None:
                raise
            await context.abort_with_status(status)
        finally:
            call.done(code, start)

    return handle


def wrap(
    method: str, handler: grpc.RpcMethodHandler, metrics: Metrics, policy: AuthPolicy
) -> grpc.RpcMethodHandler:
    """`handler` for `method` ("/package.Service/Method"), wrapped once."""
    call = _Call(method, metrics, policy(method))
    safe = _lenient(handler.request_deserializer)
    serialize = _passthrough(handler.response_serializer)
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary_response(handler.unary_unary, call, False), safe, serialize
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _unary_response(handler.stream_unary, call, True), safe, serialize
        )
    if handler.unary_stream is not None:
        behaviour = handler.unary_stream
        make = _streaming_response if inspect.isasyncgenfunction(behaviour) else _unary_response
        return grpc.unary_stream_rpc_method_handler(make(behaviour, call, False), safe, serialize)
    behaviour = handler.stream_stream
    make = _streaming_response if inspect.isasyncgenfunction(behaviour) else _unary_response
    return grpc.stream_stream_rpc_method_handler(make(behaviour, call, True), safe, serialize)


class Registrar:
    """Stands in for the server while the generated `add_*_to_server`
    functions register their services, and wraps each method once."""

    def __init__(self, metrics: Metrics, policy: AuthPolicy = no_authentication) -> None:
        self._metrics = metrics
        self._policy = policy
        self._generic: list[grpc.GenericRpcHandler] = []
        self.methods: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        # Newer generated code registers each service both ways (this and
        # add_registered_method_handlers); older code only this way.
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            self._add(f"/{service}/{name}", handler)

    def install(self, server: grpc.aio.Server) -> None:
        for generic in self._generic:
            self._add_generic(generic)
        server.add_generic_rpc_handlers((_Methods(self.methods),))

    def _add(self, method: str, handler: grpc.RpcMethodHandler) -> None:
        self.methods[method] = wrap(method, handler, self._metrics, self._policy)

    def _add_generic(self, generic: grpc.GenericRpcHandler) -> None:
        """Each method of a generic handler's service, asked for by name
        (its descriptor says which methods there are)."""
        if not isinstance(generic, grpc.ServiceRpcHandler):
            raise TypeError(f"cannot list the methods of {generic!r}")
        name = generic.service_name()
        service = descriptor_pool.Default().FindServiceByName(name)
        for described in service.methods:
            method = f"/{name}/{described.name}"
            if method in self.methods:
                continue
            handler = generic.service(_Details(method))
            if handler is not None:
                self._add(method, handler)


class _Details(grpc.HandlerCallDetails):  # type: ignore[misc]
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


class _Methods(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Every wrapped method, found by one dictionary lookup per call."""

    def __init__(self, methods: Mapping[str, grpc.RpcMethodHandler]) -> None:
        self._methods = dict(methods)

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        return self._methods.get(details.method)
