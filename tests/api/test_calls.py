"""The one wrapper per method (lrod.api.calls) on a real grpc.aio server: the
authentication step runs for the methods that have one and sets the caller,
its refusal and any unexpected error come back with ErrorInfo, and the
policy is asked once per method at start-up, not per call."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.longrunning import operations_pb2
from prometheus_client import generate_latest

from lrod.api.calls import AuthStep, Registrar
from lrod.api.identity import ANONYMOUS, Principal, caller
from lrod.domain.errors import Unauthenticated
from lrod.metrics import Metrics
from tests.helpers import error_info

Request = operations_pb2.GetOperationRequest
Response = operations_pb2.Operation
SERVICE = "lrod.test.Calls"


async def who(request: Request, context: grpc.aio.ServicerContext) -> Response:
    return Response(name=caller(context).name)


async def crash(request: Request, context: grpc.aio.ServicerContext) -> Response:
    raise RuntimeError("secret internal detail")


async def stream(request: Request, context: grpc.aio.ServicerContext) -> AsyncIterator[Response]:
    yield Response(name=caller(context).name)
    raise Unauthenticated("the token expired mid-stream", reason="TOKEN_EXPIRED")


def unary(behaviour: Any) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        behaviour, Request.FromString, Response.SerializeToString
    )


class Policy:
    """Authentication for every method but Open: the `token` metadata
    names the principal."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.steps = 0

    def __call__(self, method: str) -> AuthStep | None:
        self.asked.append(method)
        return None if method.endswith("/Open") else self.authenticate

    async def authenticate(self, context: grpc.aio.ServicerContext) -> Principal:
        self.steps += 1
        for key, value in context.invocation_metadata() or ():
            if key == "token":
                return Principal(str(value))
        raise Unauthenticated("credentials are required", reason="CREDENTIALS_REQUIRED")


@pytest.fixture
async def served() -> AsyncIterator[tuple[grpc.aio.Channel, Policy, Metrics]]:
    policy = Policy()
    metrics = Metrics()
    methods = Registrar(metrics, policy)
    methods.add_registered_method_handlers(
        SERVICE,
        {
            "Who": unary(who),
            "Open": unary(who),
            "Crash": unary(crash),
            "Stream": grpc.unary_stream_rpc_method_handler(
                stream, Request.FromString, Response.SerializeToString
            ),
        },
    )
    server = grpc.aio.server()
    methods.install(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel, policy, metrics
    finally:
        await server.stop(None)


def _unary(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(f"/{SERVICE}/{name}", Request.SerializeToString, Response.FromString)


async def test_the_step_sets_the_caller_of_each_call(served) -> None:
    channel, policy, _ = served
    call = _unary(channel, "Who")
    assert (await call(Request(), metadata=(("token", "alice"),))).name == "alice"
    assert (await call(Request(), metadata=(("token", "bob"),))).name == "bob"
    assert policy.steps == 2


async def test_a_refused_step_answers_its_status_with_error_info(served) -> None:
    channel, _, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _unary(channel, "Who")(Request())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "CREDENTIALS_REQUIRED"


async def test_a_method_without_a_step_runs_none(served) -> None:
    channel, policy, _ = served
    assert (await _unary(channel, "Open")(Request())).name == ANONYMOUS.name
    assert policy.steps == 0


async def test_the_policy_is_asked_once_per_method_at_start_up(served) -> None:
    channel, policy, _ = served
    for _ in range(3):
        await _unary(channel, "Open")(Request())
    assert sorted(policy.asked) == sorted(
        f"/{SERVICE}/{name}" for name in ("Who", "Open", "Crash", "Stream")
    )


async def test_an_unexpected_error_is_internal_with_error_info_and_no_detail(served) -> None:
    channel, _, _ = served
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _unary(channel, "Crash")(Request(), metadata=(("token", "alice"),))
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert error_info(caught.value).reason == "INTERNAL"
    assert "secret" not in (caught.value.details() or "")


async def test_an_error_mid_stream_ends_it_with_its_status(served) -> None:
    channel, _, _ = served
    method = f"/{SERVICE}/Stream"
    call = channel.unary_stream(method, Request.SerializeToString, Response.FromString)
    responses = call(Request(), metadata=(("token", "carol"),)).__aiter__()
    assert (await responses.__anext__()).name == "carol"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await responses.__anext__()
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value).reason == "TOKEN_EXPIRED"


async def test_each_call_is_counted_by_method_and_code(served) -> None:
    channel, _, metrics = served
    await _unary(channel, "Open")(Request())
    with pytest.raises(grpc.aio.AioRpcError):
        await _unary(channel, "Who")(Request())
    text = generate_latest(metrics.registry).decode()
    assert f'lrod_rpc_handled_total{{code="OK",method="{SERVICE}/Open"}} 1.0' in text
    assert f'lrod_rpc_handled_total{{code="UNAUTHENTICATED",method="{SERVICE}/Who"}} 1.0' in text
    assert f'lrod_rpc_duration_seconds_count{{method="{SERVICE}/Open"}} 1.0' in text
