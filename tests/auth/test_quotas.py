"""Quotas: each limit answers RESOURCE_EXHAUSTED with QuotaFailure and (where
waiting helps) RetryInfo, HTTP 429 with Retry-After; nothing is stored by a
refused Submit, and what was stored before is all there."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from lrod.api.validation import new_job
from lrod.app import Service
from lrod.clock import utcnow
from lrod.console.access import Access
from lrod.http.server import HttpFrontDoor
from lrod.manager import ManagerSettings
from lrod.settings import QuotaSettings, SecuritySettings
from lrod.v1 import job_service_pb2, job_service_pb2_grpc
from lrod.worker import WorkerSettings
from tests.auth.conftest import Caller, Principals, ServiceFactory
from tests.auth.test_owners import _sleep_request
from tests.helpers import http_door, metadata


def _quota_details(error: grpc.RpcError) -> tuple[str, list[str], float | None]:
    """The ErrorInfo reason, the QuotaFailure subjects and the RetryInfo delay."""
    status = rpc_status.from_call(error)
    assert status is not None
    reason, subjects, delay = "", [], None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
            failure = error_details_pb2.QuotaFailure()
            detail.Unpack(failure)
            subjects = [v.subject for v in failure.violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            delay = retry.retry_delay.ToTimedelta().total_seconds()
    return reason, subjects, delay


async def _refused(call: Any) -> tuple[str, list[str], float | None]:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return _quota_details(raised.value)


async def _start(start_service: ServiceFactory, principals: Principals, **quotas: Any) -> Service:
    service: Service = await start_service(
        security=SecuritySettings(auth_token_file=str(principals.token_file)),
        quotas=QuotaSettings(**quotas),
        workers=WorkerSettings(concurrency=0),
    )
    return service


async def _names(ops: operations_pb2_grpc.OperationsStub, caller: Caller) -> set[str]:
    page = await ops.ListOperations(
        operations_pb2.ListOperationsRequest(), metadata=caller.metadata
    )
    return {op.name for op in page.operations}


def _stubs(channel: grpc.aio.Channel) -> tuple[Any, Any]:
    return job_service_pb2_grpc.JobServiceStub(channel), operations_pb2_grpc.OperationsStub(channel)


async def test_submit_rate_is_a_token_bucket_per_principal(
    start_service: ServiceFactory, principals: Principals
) -> None:
    service = await _start(start_service, principals, submit_rate=0.5, submit_burst=3)
    alice, bob = principals.alice, principals.bob
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        stored = {
            (await jobs.Submit(_sleep_request(), metadata=alice.metadata)).name for _ in range(3)
        }
        reason, subjects, delay = await _refused(
            jobs.Submit(_sleep_request(), metadata=alice.metadata)
        )
        assert reason == "SUBMIT_RATE_EXCEEDED"
        assert subjects == ["principal:alice"]
        assert delay is not None
        assert 0 < delay <= 2
        # A batch takes one token per job.
        batch = job_service_pb2.BatchSubmitRequest(requests=[_sleep_request(), _sleep_request()])
        reason, _, _ = await _refused(jobs.BatchSubmit(batch, metadata=alice.metadata))
        assert reason == "SUBMIT_RATE_EXCEEDED"
        # Bob has a bucket of his own.
        await jobs.Submit(_sleep_request(), metadata=bob.metadata)
        assert await _names(ops, alice) == stored

    door = HttpFrontDoor(service.manager, "127.0.0.1:0", authentication=service.authentication)
    await door.start()
    body = {
        "jobType": "examples.sleep",
        "input": {"@type": "type.googleapis.com/lrod.examples.v1.SleepJob"},
    }
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{door.port}") as http:
            refused = await http.post("/v1/operations:submit", json=body, headers=alice.headers)
            assert refused.status == 429
            assert int(refused.headers["Retry-After"]) >= 1
            error = (await refused.json())["error"]
            assert error["status"] == "RESOURCE_EXHAUSTED"
            kinds = {d["@type"].rsplit(".", 1)[-1] for d in error["details"]}
            assert {"ErrorInfo", "QuotaFailure", "RetryInfo"} <= kinds
    finally:
        await door.stop()


async def test_active_operations_per_principal_and_a_batch_judged_whole(
    start_service: ServiceFactory, principals: Principals
) -> None:
    service = await _start(start_service, principals, active_operations=2)
    alice, bob = principals.alice, principals.bob
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        first = await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        reason, subjects, delay = await _refused(
            jobs.Submit(_sleep_request(), metadata=alice.metadata)
        )
        assert (reason, subjects, delay) == ("ACTIVE_OPERATIONS_EXCEEDED", ["principal:alice"], 1.0)
        batch = job_service_pb2.BatchSubmitRequest(
            requests=[_sleep_request(), _sleep_request(), _sleep_request()]
        )
        reason, _, _ = await _refused(jobs.BatchSubmit(batch, metadata=bob.metadata))
        assert reason == "ACTIVE_OPERATIONS_EXCEEDED"
        assert await _names(ops, bob) == set()  # nothing of the batch was stored
        assert len(await _names(ops, alice)) == 2
        # A finished operation frees its place.
        await ops.CancelOperation(
            operations_pb2.CancelOperationRequest(name=first.name), metadata=alice.metadata
        )
        await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        assert len(await _names(ops, alice)) == 3


async def test_a_submit_handed_off_to_an_idle_worker_counts_as_active(
    start_service: ServiceFactory, principals: Principals
) -> None:
    service = await start_service(
        security=SecuritySettings(auth_token_file=str(principals.token_file)),
        quotas=QuotaSettings(active_operations=1),
        workers=WorkerSettings(concurrency=2, poll_interval=0.2, hand_off=True),
    )
    pool = service.pool
    assert pool is not None
    alice = principals.alice
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        async with asyncio.timeout(20):
            while not pool.idle:
                await asyncio.sleep(0.01)
        first = await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        assert metadata(first).state == metadata(first).RUNNING  # handed off
        reason, subjects, _ = await _refused(jobs.Submit(_sleep_request(), metadata=alice.metadata))
        assert (reason, subjects) == ("ACTIVE_OPERATIONS_EXCEEDED", ["principal:alice"])
        assert await _names(ops, alice) == {first.name}


async def test_a_retry_at_the_limit_gets_its_original_operation(
    start_service: ServiceFactory, principals: Principals
) -> None:
    """AIP-155: a Submit retried with its request_id returns the operation it
    created, even when its principal is at a quota (rate or active
    operations) that a new Submit would exceed; nothing more is stored, and
    a reused request_id is still refused as such. A retried BatchSubmit too."""
    service = await _start(
        start_service, principals, active_operations=4, submit_rate=0.01, submit_burst=5
    )
    alice = principals.alice
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        request = _sleep_request(request_id=str(uuid.uuid4()))
        original = await jobs.Submit(request, metadata=alice.metadata)
        batch = job_service_pb2.BatchSubmitRequest(
            requests=[_sleep_request(), _sleep_request()], request_id=str(uuid.uuid4())
        )
        batched = await jobs.BatchSubmit(batch, metadata=alice.metadata)
        await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        # 4 active: a new Submit is refused by the active limit...
        reason, _, _ = await _refused(jobs.Submit(_sleep_request(), metadata=alice.metadata))
        assert reason == "ACTIVE_OPERATIONS_EXCEEDED"
        assert await jobs.Submit(request, metadata=alice.metadata) == original
        assert await jobs.BatchSubmit(batch, metadata=alice.metadata) == batched
        # ...and, the burst spent, by the rate: the retries still get theirs.
        reason, _, _ = await _refused(jobs.Submit(_sleep_request(), metadata=alice.metadata))
        assert reason == "SUBMIT_RATE_EXCEEDED"
        assert await jobs.Submit(request, metadata=alice.metadata) == original
        assert await jobs.BatchSubmit(batch, metadata=alice.metadata) == batched
        reused = _sleep_request(request_id=request.request_id, priority=3)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await jobs.Submit(reused, metadata=alice.metadata)
        assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert len(await _names(ops, alice)) == 4


async def test_server_wide_bounds_on_queued_operations_and_their_input(
    start_service: ServiceFactory, principals: Principals
) -> None:
    service = await _start(start_service, principals, queued_operations=3)
    alice, bob = principals.alice, principals.bob
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        for caller in (alice, alice, bob):
            await jobs.Submit(_sleep_request(), metadata=caller.metadata)
        reason, subjects, _ = await _refused(jobs.Submit(_sleep_request(), metadata=bob.metadata))
        assert (reason, subjects) == ("QUEUE_FULL", ["server"])
        assert len(await _names(ops, alice)) == 2
        assert len(await _names(ops, bob)) == 1
    size = len(_sleep_request().input.value)
    # The same database: its 3 queued operations count, plus room for 2 more.
    bytes_service = await _start(start_service, principals, queued_input_bytes=5 * size)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{bytes_service.port}") as channel:
        jobs, _ = _stubs(channel)
        await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        await jobs.Submit(_sleep_request(), metadata=bob.metadata)
        reason, subjects, _ = await _refused(jobs.Submit(_sleep_request(), metadata=alice.metadata))
        assert (reason, subjects) == ("QUEUED_INPUT_FULL", ["server"])


async def test_request_size_and_concurrent_waits(
    start_service: ServiceFactory, principals: Principals
) -> None:
    service = await _start(start_service, principals, request_bytes=200, concurrent_waits=1)
    alice = principals.alice
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        big = _sleep_request(labels={f"k{i}": "v" * 20 for i in range(8)})
        assert big.ByteSize() > 200
        reason, subjects, delay = await _refused(jobs.Submit(big, metadata=alice.metadata))
        assert (reason, subjects, delay) == ("REQUEST_TOO_LARGE", ["request"], None)
        op = await jobs.Submit(_sleep_request(), metadata=alice.metadata)
        stream = jobs.WatchOperation(
            job_service_pb2.WatchOperationRequest(name=op.name), metadata=alice.metadata
        )
        await stream.read()  # the watch is open
        reason, subjects, _ = await _refused(
            ops.WaitOperation(
                operations_pb2.WaitOperationRequest(name=op.name), metadata=alice.metadata
            )
        )
        assert (reason, subjects) == ("CONCURRENT_WAITS_EXCEEDED", ["principal:alice"])
        # Bob waits meanwhile: the limit is alice's.
        waited = await ops.WaitOperation(
            operations_pb2.WaitOperationRequest(name=op.name),
            metadata=principals.admin.metadata,
            timeout=5,
        )
        assert not waited.done
        stream.cancel()
        await asyncio.sleep(0)
        assert await _names(ops, alice) == {op.name}


async def _until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_client_that_hangs_up_gives_its_wait_back(
    start_service: ServiceFactory, principals: Principals
) -> None:
    """An HTTP watch, wait or console event stream whose client disconnected
    gives the concurrent-wait quota back at once, not when the operation
    (which here never changes) next changes."""
    service: Service = await start_service(
        security=SecuritySettings(auth_token_file=str(principals.token_file)),
        quotas=QuotaSettings(concurrent_waits=1),
        workers=WorkerSettings(concurrency=0),
        # A wait lasts longer than the test: only its client's leaving ends it.
        manager=ManagerSettings(max_wait=3600.0),
    )
    quotas = service.manager.quotas
    alice = principals.alice
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, _ = _stubs(channel)
        op = await jobs.Submit(_sleep_request(), metadata=alice.metadata)
    op_id = op.name.removeprefix("operations/")
    watch = ("GET", f"/v1/operations/{op_id}:watch", {})
    calls = [
        watch,
        ("POST", f"/v1/operations/{op_id}:wait", {"json": {}}),
        ("GET", f"/console/operations/{op_id}/events", {}),
    ]
    async with http_door(
        service.manager,
        authentication=service.authentication,
        console=True,
        console_access=Access(service.authentication),
    ) as door:
        url = f"http://127.0.0.1:{door.port}"
        for method, path, kw in calls:
            await _until(lambda: quotas.waits_open(alice.name) == 0)
            async with aiohttp.ClientSession(url) as http:
                held = asyncio.ensure_future(
                    http.request(method, path, headers=alice.headers, **kw)
                )
                await _until(lambda: quotas.waits_open(alice.name) == 1)
                refused = await http.request(method, path, headers=alice.headers, **kw)
                assert refused.status == 429
                refused.release()
                if held.done():  # a stream: its headers came
                    held.result().close()
                else:
                    held.cancel()
            # The client hung up (its session closed its connections): the
            # quota comes back, and the same principal's next watch is let in.
            await _until(lambda: quotas.waits_open(alice.name) == 0)
            async with aiohttp.ClientSession(url) as http:
                method, path, kw = watch
                again = await http.request(method, path, headers=alice.headers, **kw)
                assert again.status == 200
                await again.content.readline()
                assert quotas.waits_open(alice.name) == 1
                again.close()


async def test_a_submit_whose_caller_leaves_mid_create_keeps_its_place(
    start_service: ServiceFactory, principals: Principals
) -> None:
    """A caller cancelled while its Submit's create is in flight (a client
    hanging up: the HTTP door cancels its handler) leaves the write to the
    store, which stores it: its place under the limit stays taken meanwhile,
    instead of being given back as if nothing had been stored."""
    service = await _start(start_service, principals, active_operations=1)
    alice, manager = principals.alice, service.manager
    job = new_job(_sleep_request(), manager.registry, alice.name, utcnow())
    submit = asyncio.create_task(manager.submit(job))
    async with asyncio.timeout(10):
        while not manager.quotas.reserved(alice.name):  # reserved: the create is under way
            await asyncio.sleep(0)
    submit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submit
    assert manager.quotas.reserved(alice.name) == 1
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        jobs, ops = _stubs(channel)
        reason, _, _ = await _refused(jobs.Submit(_sleep_request(), metadata=alice.metadata))
        assert reason == "ACTIVE_OPERATIONS_EXCEEDED"
        async with asyncio.timeout(10):
            while not await _names(ops, alice):
                await asyncio.sleep(0.01)
        assert await _names(ops, alice) == {f"operations/{job.id}"}  # stored all the same
