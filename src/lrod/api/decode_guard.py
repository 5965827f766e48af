"""Requests whose bytes do not decode get INVALID_ARGUMENT with ErrorInfo.

grpcio itself answers such a request with UNKNOWN and the decoder's exception
text. This interceptor swaps each method's request deserializer for one that
cannot raise, and refuses the marked request before the servicer sees it; it
covers every service on the port (ours, Health and reflection)."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc_status import rpc_status

from lrod.api.errors import status_of
from lrod.domain.errors import FieldViolation, InvalidArgument


class _Undecodable:
    """Stands in for a request message that did not decode."""


UNDECODABLE = _Undecodable()


def _refusal() -> grpc.Status:
    error = InvalidArgument.of(
        [FieldViolation("request", "the request message does not decode", "UNDECODABLE_REQUEST")],
        reason="UNDECODABLE_REQUEST",
    )
    return rpc_status.to_status(status_of(error))


def _lenient(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def safe(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception:
            return UNDECODABLE

    return safe


async def _checked(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
    async for request in requests:
        if request is UNDECODABLE:
            await context.abort_with_status(_refusal())
        yield request


def _guard_unary(behaviour: Callable[..., Any], streaming_response: bool) -> Callable[..., Any]:
    if streaming_response and inspect.isasyncgenfunction(behaviour):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if request is UNDECODABLE:
                await context.abort_with_status(_refusal())
            async for response in behaviour(request, context):
                yield response

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if request is UNDECODABLE:
            await context.abort_with_status(_refusal())
        return await behaviour(request, context)

    return call


def _guard_streaming(behaviour: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isasyncgenfunction(behaviour):

        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            async for response in behaviour(_checked(requests, context), context):
                yield response

        return stream

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        return await behaviour(_checked(requests, context), context)

    return call


class DecodeGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or handler.request_deserializer is None:
            return handler
        safe = _lenient(handler.request_deserializer)
        serialize = handler.response_serializer
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _guard_unary(handler.unary_unary, False), safe, serialize
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _guard_unary(handler.unary_stream, True), safe, serialize
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _guard_streaming(handler.stream_unary), safe, serialize
            )
        return grpc.stream_stream_rpc_method_handler(
            _guard_streaming(handler.stream_stream), safe, serialize
        )
