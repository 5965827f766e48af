"""A grpc.aio server interceptor that times every RPC and counts its status
code by method, for every service on the port (health and reflection too)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from lrod.metrics import Metrics

Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]]


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            # An unknown method: grpc answers UNIMPLEMENTED. Not counted, so a
            # caller cannot mint label values.
            return None
        method = str(handler_call_details.method).lstrip("/")
        timed = _Timed(self._metrics, method)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=timed.unary(handler.unary_unary))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=timed.unary(handler.stream_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=timed.stream(handler.unary_stream))
        if handler.stream_stream is not None:
            return handler._replace(stream_stream=timed.stream(handler.stream_stream))
        return handler


class _Timed:
    def __init__(self, metrics: Metrics, method: str) -> None:
        self._metrics = metrics
        self._method = method

    def unary(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as raised:
                error = raised
                raise
            finally:
                self._record(context, error, start)

        return timed

    def stream(self, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            # A handler that writes with context.write() and returns (the
            # health servicer's Watch): time it like a unary one.
            return self.unary(behavior)

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            start = time.perf_counter()
            error: BaseException | None = None
            try:
                async for response in behavior(request, context):
                    yield response
            except BaseException as raised:
                error = raised
                raise
            finally:
                self._record(context, error, start)

        return timed

    def _record(
        self, context: grpc.aio.ServicerContext, error: BaseException | None, start: float
    ) -> None:
        self._metrics.rpc_handled(self._method, _code(context, error), time.perf_counter() - start)


def _code(context: grpc.aio.ServicerContext, error: BaseException | None) -> str:
    """The status the call ends with: the one set on the context (an abort
    sets it), else what the exception means to grpc."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int) and code != 0:
        return _BY_NUMBER.get(code, "UNKNOWN")
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    if error is not None:
        return "UNKNOWN"
    return "OK"


_BY_NUMBER: dict[int, str] = {status.value[0]: status.name for status in grpc.StatusCode}
