"""Owners: B never reads, lists, waits on, watches, cancels or deletes A's
operation, and every answer B gets is byte for byte the answer for a name
that never existed (the id swapped); request_id and dedupe keys are B's own;
an admin reads, lists, waits, watches and cancels across owners, logged.
Over gRPC and every HTTP route, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import duration_pb2
from prometheus_client import generate_latest

from lrod.api.validation import new_job
from lrod.app import Service
from lrod.auth.principal import ADMIN, Principal
from lrod.clock import utcnow
from lrod.domain.states import State
from lrod.examples.v1 import examples_pb2
from lrod.http.server import HttpFrontDoor
from lrod.settings import SecuritySettings
from lrod.v1 import job_service_pb2, job_service_pb2_grpc
from lrod.worker import WorkerSettings
from tests.auth.conftest import Principals, ServiceFactory
from tests.helpers import pack

MISSING_ID = "AAAAAAAAAAAAAAAAAAAAAA"
REQUEST_ID = "123e4567-e89b-12d3-a456-426614174000"


def _sleep_request(**fields: Any) -> job_service_pb2.SubmitRequest:
    job = examples_pb2.SleepJob(duration=duration_pb2.Duration(seconds=30), steps=1)
    return job_service_pb2.SubmitRequest(job_type="examples.sleep", input=pack(job), **fields)


def _refusal(error: grpc.RpcError) -> tuple[Any, str, bytes]:
    trailers = dict(error.trailing_metadata() or ())
    return error.code(), error.details(), trailers["grpc-status-details-bin"]


async def _grpc_answer(call: Callable[[], Awaitable[Any]]) -> tuple[Any, str, bytes]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call()
    return _refusal(raised.value)


@pytest.fixture
async def channel(token_service: Service) -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{token_service.port}") as opened:
        yield opened


async def test_grpc_another_owners_operation_answers_like_a_missing_one(
    channel: grpc.aio.Channel, principals: Principals, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    ops = operations_pb2_grpc.OperationsStub(channel)
    alice, bob, admin = principals.alice, principals.bob, principals.admin
    running = await jobs.Submit(_sleep_request(request_id=REQUEST_ID), metadata=alice.metadata)
    quick = pack(examples_pb2.SleepJob(duration=duration_pb2.Duration(nanos=1000), steps=1))
    finished = await jobs.Submit(
        job_service_pb2.SubmitRequest(job_type="examples.sleep", input=quick),
        metadata=alice.metadata,
    )
    done = await ops.WaitOperation(
        operations_pb2.WaitOperationRequest(name=finished.name), metadata=alice.metadata
    )
    assert done.done
    # Alice's answers are kept (the Wait's, these Gets'): bob still gets none.
    for target in (running, finished):
        await ops.GetOperation(
            operations_pb2.GetOperationRequest(name=target.name), metadata=alice.metadata
        )
    missing = f"operations/{MISSING_ID}"

    def calls(name: str) -> dict[str, Callable[[], Awaitable[Any]]]:
        async def watch() -> None:
            stream = jobs.WatchOperation(
                job_service_pb2.WatchOperationRequest(name=name), metadata=bob.metadata
            )
            async for _ in stream:
                pass

        return {
            "get": lambda: ops.GetOperation(
                operations_pb2.GetOperationRequest(name=name), metadata=bob.metadata
            ),
            "cancel": lambda: ops.CancelOperation(
                operations_pb2.CancelOperationRequest(name=name), metadata=bob.metadata
            ),
            "delete": lambda: ops.DeleteOperation(
                operations_pb2.DeleteOperationRequest(name=name), metadata=bob.metadata
            ),
            "wait": lambda: ops.WaitOperation(
                operations_pb2.WaitOperationRequest(name=name), metadata=bob.metadata
            ),
            "watch": watch,
        }

    for target in (running, finished):
        theirs_id = target.name.removeprefix("operations/")
        for rpc, call in calls(target.name).items():
            code, message, status = await _grpc_answer(call)
            never_code, never_message, never_status = await _grpc_answer(calls(missing)[rpc])
            assert code == never_code == grpc.StatusCode.NOT_FOUND, rpc
            assert message.replace(theirs_id, MISSING_ID) == never_message, rpc
            assert status.replace(theirs_id.encode(), MISSING_ID.encode()) == never_status, rpc

    listed = await ops.ListOperations(operations_pb2.ListOperationsRequest(), metadata=bob.metadata)
    assert list(listed.operations) == []
    # request_id and dedupe key are scoped by owner: bob's same ids make bob's own.
    bobs = await jobs.Submit(_sleep_request(request_id=REQUEST_ID), metadata=bob.metadata)
    assert bobs.name != running.name
    first = await jobs.Submit(_sleep_request(dedupe_key="k"), metadata=alice.metadata)
    second = await jobs.Submit(_sleep_request(dedupe_key="k"), metadata=bob.metadata)
    assert first.name != second.name
    batch = job_service_pb2.BatchSubmitRequest(
        requests=[_sleep_request()], request_id="223e4567-e89b-12d3-a456-426614174000"
    )
    alices_batch = await jobs.BatchSubmit(batch, metadata=alice.metadata)
    bobs_batch = await jobs.BatchSubmit(batch, metadata=bob.metadata)
    assert alices_batch.operations[0].name != bobs_batch.operations[0].name

    # Still there for alice, untouched by bob's cancel.
    mine = await ops.GetOperation(
        operations_pb2.GetOperationRequest(name=running.name), metadata=alice.metadata
    )
    assert not mine.done

    # The admin reads, lists, waits on and cancels across owners; each is logged.
    seen = await ops.GetOperation(
        operations_pb2.GetOperationRequest(name=running.name), metadata=admin.metadata
    )
    assert seen.name == running.name
    everyone = await ops.ListOperations(
        operations_pb2.ListOperationsRequest(), metadata=admin.metadata
    )
    assert {running.name, finished.name, bobs.name} <= {o.name for o in everyone.operations}
    waited = await ops.WaitOperation(
        operations_pb2.WaitOperationRequest(name=finished.name), metadata=admin.metadata
    )
    assert waited.done
    await ops.CancelOperation(
        operations_pb2.CancelOperationRequest(name=running.name), metadata=admin.metadata
    )
    # Delete stays with the owner, even for an admin.
    code, _, _ = await _grpc_answer(
        lambda: ops.DeleteOperation(
            operations_pb2.DeleteOperationRequest(name=finished.name), metadata=admin.metadata
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    await ops.DeleteOperation(
        operations_pb2.DeleteOperationRequest(name=finished.name), metadata=alice.metadata
    )
    actions = [
        (r.action, r.target, r.owner)  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "audit", None) == "admin"
    ]
    assert ("get", running.name, "alice") in actions
    assert ("cancel", running.name, "alice") in actions
    assert ("wait", finished.name, "alice") in actions
    assert any(a[0] == "list" for a in actions)
    _no_token_logged(caplog, principals)


def _no_token_logged(caplog: pytest.LogCaptureFixture, principals: Principals) -> None:
    text = "\n".join(f"{r.getMessage()} {json.dumps(vars(r), default=str)}" for r in caplog.records)
    for caller in (principals.alice, principals.bob, principals.admin, principals.reader):
        assert caller.token not in text


async def test_grpc_refusals_are_unauthenticated_or_denied_and_audited(
    channel: grpc.aio.Channel,
    token_service: Service,
    principals: Principals,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    jobs = job_service_pb2_grpc.JobServiceStub(channel)
    no_credentials = await _grpc_answer(
        lambda: jobs.ListJobTypes(job_service_pb2.ListJobTypesRequest())
    )
    assert no_credentials[0] == grpc.StatusCode.UNAUTHENTICATED
    wrong = f"{principals.alice.token}x"
    rejected = await _grpc_answer(
        lambda: jobs.ListJobTypes(
            job_service_pb2.ListJobTypesRequest(), metadata=(("authorization", f"Bearer {wrong}"),)
        )
    )
    assert rejected[0] == grpc.StatusCode.UNAUTHENTICATED
    assert wrong.encode() not in rejected[2]
    denied = await _grpc_answer(
        lambda: jobs.Submit(_sleep_request(), metadata=principals.reader.metadata)
    )
    assert denied[0] == grpc.StatusCode.PERMISSION_DENIED
    # A read-only principal still reads.
    await jobs.ListJobTypes(
        job_service_pb2.ListJobTypesRequest(), metadata=principals.reader.metadata
    )
    exposition = generate_latest(token_service.metrics.registry).decode()
    for caller in (principals.alice, principals.bob, principals.admin, principals.reader):
        assert caller.token not in exposition
    assert wrong not in exposition
    refused = [r for r in caplog.records if getattr(r, "audit", None) == "refused"]
    assert [r.reason for r in refused] == [  # type: ignore[attr-defined]
        "CREDENTIALS_REQUIRED",
        "INVALID_CREDENTIALS",
        "PERMISSION_DENIED",
    ]
    assert all(r.peer for r in refused)  # type: ignore[attr-defined]
    text = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert wrong not in text
    _no_token_logged(caplog, principals)


async def _http_answer(response: aiohttp.ClientResponse) -> tuple[int, bytes]:
    return response.status, await response.read()


async def test_http_another_owners_operation_answers_like_a_missing_one(
    token_service: Service, principals: Principals, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    door = HttpFrontDoor(
        token_service.manager, "127.0.0.1:0", authentication=token_service.authentication
    )
    await door.start()
    alice, bob, admin = principals.alice, principals.bob, principals.admin
    body = {
        "jobType": "examples.sleep",
        "input": {"@type": "type.googleapis.com/lrod.examples.v1.SleepJob", "duration": "30s"},
    }
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{door.port}") as http:
            accepted = await http.post(
                "/v1/operations:submit",
                json=body,
                headers={**alice.headers, "Idempotency-Key": REQUEST_ID},
            )
            assert accepted.status == 202
            theirs = (await accepted.json())["name"]
            theirs_id = theirs.removeprefix("operations/")

            def routes(op_id: str) -> list[Callable[[], Any]]:
                h = bob.headers
                return [
                    lambda: http.get(f"/v1/operations/{op_id}", headers=h),
                    lambda: http.get(f"/v1/operations/{op_id}:result", headers=h),
                    lambda: http.get(f"/v1/operations/{op_id}:watch", headers=h),
                    lambda: http.post(f"/v1/operations/{op_id}:cancel", json={}, headers=h),
                    lambda: http.post(f"/v1/operations/{op_id}:wait", json={}, headers=h),
                    lambda: http.delete(f"/v1/operations/{op_id}", json={}, headers=h),
                ]

            for route, never in zip(routes(theirs_id), routes(MISSING_ID), strict=True):
                status, content = await _http_answer(await route())
                never_status, never_content = await _http_answer(await never())
                assert status == never_status == 404
                assert content.replace(theirs_id.encode(), MISSING_ID.encode()) == never_content

            listed = await (await http.get("/v1/operations", headers=bob.headers)).json()
            assert listed.get("operations", []) == []
            again = await http.post(
                "/v1/operations:submit",
                json=body,
                headers={**bob.headers, "Idempotency-Key": REQUEST_ID},
            )
            assert (await again.json())["name"] != theirs

            unauthenticated = await http.get("/v1/operations")
            assert unauthenticated.status == 401
            assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="lrod"'
            bad = await http.get("/v1/operations", headers={"Authorization": "Bearer nope"})
            assert bad.status == 401
            assert 'error="invalid_token"' in bad.headers["WWW-Authenticate"]
            denied = await http.post(
                "/v1/operations:submit", json=body, headers=principals.reader.headers
            )
            assert denied.status == 403

            seen = await http.get(
                f"/v1/operations/{theirs_id}", headers=admin.headers, allow_redirects=False
            )
            assert seen.status == 200
            cancelled = await http.post(
                f"/v1/operations/{theirs_id}:cancel", json={}, headers=admin.headers
            )
            assert cancelled.status == 200
    finally:
        await door.stop()
    _no_token_logged(caplog, principals)


async def test_the_console_checks_its_viewers_through_the_same_seam(
    start_service: Any, principals: Principals
) -> None:
    service: Service = await start_service(
        http_address="127.0.0.1:0",
        security=SecuritySettings(auth_token_file=str(principals.token_file)),
    )
    assert service.http is not None
    async with aiohttp.ClientSession(f"http://127.0.0.1:{service.http.port}") as http:
        anonymous = await http.get("/console/", allow_redirects=False)
        assert anonymous.status == 303
        assert anonymous.headers["Location"] == "/console/login"
        wrong = await http.get(
            "/console/", headers={"Authorization": "Bearer nope"}, allow_redirects=False
        )
        assert wrong.status == 303
        signed = await http.get("/console/", headers=principals.alice.headers)
        assert signed.status == 200


async def test_an_admins_cancel_is_audited_even_if_the_caller_leaves(
    start_service: ServiceFactory, principals: Principals, caplog: pytest.LogCaptureFixture
) -> None:
    """The store runs a cancel to its end when its caller is cancelled (an
    HTTP client hanging up); the admin's audit record goes with it."""
    caplog.set_level(logging.INFO)
    service = await start_service(
        security=SecuritySettings(auth_token_file=str(principals.token_file)),
        workers=WorkerSettings(concurrency=0),
    )
    manager = service.manager
    job = new_job(_sleep_request(), manager.registry, principals.alice.name, utcnow())
    op = await manager.submit(job)
    admin = Principal(principals.admin.name, frozenset({ADMIN}))
    cancel = asyncio.create_task(manager.cancel(admin, op.name))
    await asyncio.sleep(0)  # the cancel is under way in the store
    cancel.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancel

    def audited() -> bool:
        return any(
            getattr(r, "audit", None) == "admin" and getattr(r, "action", None) == "cancel"
            for r in caplog.records
        )

    async with asyncio.timeout(10):
        while not audited():
            await asyncio.sleep(0.01)
    after = await manager.get(Principal(principals.alice.name), op.name)
    assert after.state is State.CANCELLED
