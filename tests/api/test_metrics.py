"""Prometheus metrics scraped over HTTP from a real server and parsed with
prometheus_client's own parser: the figures must match what the test did."""

from __future__ import annotations

import asyncio
import urllib.request
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from google.longrunning import operations_pb2, operations_pb2_grpc
from google.protobuf import empty_pb2, timestamp_pb2, wrappers_pb2
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lrod.app import Service, Settings
from lrod.examples.v1 import examples_pb2 as ex
from lrod.manager import ManagerSettings
from lrod.metrics import Metrics, parse_address
from lrod.v1 import job_service_pb2, job_service_pb2_grpc
from tests.helpers import state_name, submit
from tests.jobs import Gates, build_registry

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(service: Service) -> Samples:
    assert service.metrics_server is not None
    url = f"http://127.0.0.1:{service.metrics_server.port}/metrics"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return str(response.read().decode())

    text = await asyncio.to_thread(fetch)
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def _until(service: Service, name: str, expected: float, **labels: str) -> Samples:
    """Scrape until `name` shows `expected` (gauges follow calls in flight)."""
    async with asyncio.timeout(10):
        while True:
            samples = await scrape(service)
            if value(samples, name, **labels) == expected:
                return samples
            await asyncio.sleep(0.05)


async def _metered(settings: Settings, gates: Gates) -> AsyncIterator[Service]:
    service = Service(settings, build_registry(gates))
    await service.start()
    try:
        yield service
    finally:
        for gate in gates.gates.values():
            gate.set()
        await service.stop(1.0)


@pytest.fixture
async def metered(database_url, gates, worker_settings, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("LROD_EXPORT_DIR", str(tmp_path / "exports"))
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=worker_settings,
        manager=ManagerSettings(max_wait=5.0),
        metrics_address="127.0.0.1:0",
    )
    async for service in _metered(settings, gates):
        yield service


@pytest.fixture
async def idle(database_url, gates):
    """A server with no workers: what is submitted stays queued."""
    settings = Settings(
        address="127.0.0.1:0",
        database_url=database_url,
        workers=None,
        metrics_address="127.0.0.1:0",
    )
    async for service in _metered(settings, gates):
        yield service


async def _wait(operations: operations_pb2_grpc.OperationsStub, name: str) -> str:
    request = operations_pb2.WaitOperationRequest(name=name)
    request.timeout.FromTimedelta(timedelta(seconds=20))
    done = await operations.WaitOperation(request)
    assert done.done, name
    return state_name(done)


async def test_counters_histograms_and_gauges_follow_the_jobs(metered, gates) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{metered.port}") as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        operations = operations_pb2_grpc.OperationsStub(channel)
        noops = [await submit(jobs, "test.noop", empty_pb2.Empty()) for _ in range(3)]
        repeat_id = "123e4567-e89b-12d3-a456-426614174000"
        first = await submit(jobs, "test.noop", empty_pb2.Empty(), request_id=repeat_id)
        again = await submit(jobs, "test.noop", empty_pb2.Empty(), request_id=repeat_id)
        assert again.name == first.name
        flaky = await submit(jobs, "examples.flaky", ex.FlakyJob(fail_times=1))
        crash = await submit(jobs, "test.crash", wrappers_pb2.StringValue(value="x"))
        for op in [*noops, first]:
            assert await _wait(operations, op.name) == "SUCCEEDED"
        assert await _wait(operations, flaky.name) == "SUCCEEDED"
        assert await _wait(operations, crash.name) == "FAILED"
        with pytest.raises(grpc.RpcError):
            await operations.GetOperation(
                operations_pb2.GetOperationRequest(name="operations/AAAAAAAAAAAAAAAAAAAAAA")
            )

        # A running job, one WaitOperation held and one watch stream open on it.
        gated = await submit(jobs, "test.gate", wrappers_pb2.StringValue(value="m"))
        async with asyncio.timeout(10):
            await gates.started_event("m").wait()
        held = asyncio.ensure_future(_wait(operations, gated.name))
        stream = jobs.WatchOperation(job_service_pb2.WatchOperationRequest(name=gated.name))
        await stream.read()
        samples = await _until(metered, "lrod_active_waiters", 1)
        samples = await _until(metered, "lrod_active_watchers", 1)
        assert value(samples, "lrod_worker_running_jobs") == 1
        gates.gate("m").set()
        assert await held == "SUCCEEDED"
        while await stream.read() is not grpc.aio.EOF:
            pass
        samples = await _until(metered, "lrod_active_watchers", 0)
        assert value(samples, "lrod_active_waiters") == 0

    submits = "lrod_submits_total"
    assert value(samples, submits, job_type="test.noop", outcome="created") == 4
    assert value(samples, submits, job_type="test.noop", outcome="repeated") == 1
    assert value(samples, submits, job_type="examples.flaky", outcome="created") == 1
    moves = "lrod_state_transitions_total"
    for source, target, count in [("QUEUED", "RUNNING", 4), ("RUNNING", "SUCCEEDED", 4)]:
        assert value(samples, moves, job_type="test.noop", **{"from": source, "to": target}) == (
            count
        )
    flaky_moves = {
        (source, target): value(
            samples, moves, job_type="examples.flaky", **{"from": source, "to": target}
        )
        for source, target in [
            ("QUEUED", "RUNNING"),
            ("RUNNING", "QUEUED"),
            ("RUNNING", "SUCCEEDED"),
        ]
    }
    assert flaky_moves == {
        ("QUEUED", "RUNNING"): 2,
        ("RUNNING", "QUEUED"): 1,
        ("RUNNING", "SUCCEEDED"): 1,
    }
    assert value(samples, moves, job_type="test.crash", **{"from": "RUNNING", "to": "FAILED"}) == 1

    attempts = "lrod_job_attempts"
    assert value(samples, f"{attempts}_count", job_type="examples.flaky", state="SUCCEEDED") == 1
    assert value(samples, f"{attempts}_sum", job_type="examples.flaky", state="SUCCEEDED") == 2
    assert (
        value(samples, f"{attempts}_bucket", job_type="test.crash", state="FAILED", le="1.0") == 1
    )
    duration = "lrod_job_duration_seconds"
    assert value(samples, f"{duration}_count", job_type="test.noop", state="SUCCEEDED") == 4
    noop_seconds = value(samples, f"{duration}_sum", job_type="test.noop", state="SUCCEEDED")
    assert noop_seconds is not None
    assert 0 < noop_seconds < 20
    tried = "lrod_attempt_duration_seconds_count"
    assert value(samples, tried, job_type="examples.flaky", outcome="failed") == 1
    assert value(samples, tried, job_type="examples.flaky", outcome="succeeded") == 1

    rpcs = "lrod_rpc_handled_total"
    submit_method = "lrod.v1.JobService/Submit"
    assert value(samples, rpcs, method=submit_method, code="OK") == 8
    get_method = "google.longrunning.Operations/GetOperation"
    assert value(samples, rpcs, method=get_method, code="NOT_FOUND") == 1
    watch_method = "lrod.v1.JobService/WatchOperation"
    assert value(samples, rpcs, method=watch_method, code="OK") == 1
    latency = "lrod_rpc_duration_seconds"
    assert value(samples, f"{latency}_count", method=submit_method) == 8
    assert value(samples, f"{latency}_bucket", method=submit_method, le="+Inf") == 8
    assert value(samples, "lrod_database_up") == 1


async def test_queue_depth_and_age_are_read_at_scrape_time(idle) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{idle.port}") as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        operations = operations_pb2_grpc.OperationsStub(channel)
        due = [await submit(jobs, "test.noop", empty_pb2.Empty()) for _ in range(3)]
        later = timestamp_pb2.Timestamp()
        later.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
        await submit(jobs, "test.noop", empty_pb2.Empty(), schedule_time=later)
        await asyncio.sleep(0.3)
        samples = await scrape(idle)
        assert value(samples, "lrod_queue_depth", job_type="test.noop") == 4
        assert value(samples, "lrod_queue_ready", job_type="test.noop") == 3
        age = value(samples, "lrod_queue_oldest_age_seconds", job_type="test.noop")
        assert age is not None
        assert 0.3 <= age < 30
        # Registered types with nothing queued show zeros rather than nothing.
        assert value(samples, "lrod_queue_depth", job_type="examples.sleep") == 0
        assert value(samples, "lrod_queue_oldest_age_seconds", job_type="examples.sleep") == 0

        await operations.CancelOperation(operations_pb2.CancelOperationRequest(name=due[0].name))
        samples = await scrape(idle)
    assert value(samples, "lrod_queue_depth", job_type="test.noop") == 3
    assert value(samples, "lrod_queue_ready", job_type="test.noop") == 2
    moves = "lrod_state_transitions_total"
    cancelled = {"from": "QUEUED", "to": "CANCELLED"}
    assert value(samples, moves, job_type="test.noop", **cancelled) == 1
    duration = "lrod_job_duration_seconds_count"
    assert value(samples, duration, job_type="test.noop", state="CANCELLED") == 1
    assert value(samples, "lrod_submits_total", job_type="test.noop", outcome="created") == 4

    # Scraped on the event loop's own thread, the store cannot be awaited:
    # the queue figures are left out rather than deadlocking.
    text = generate_latest(idle.metrics.registry).decode()
    assert "lrod_submits_total" in text
    assert "lrod_queue_depth{" not in text


async def test_a_worker_only_process_serves_metrics_too(database_url, gates) -> None:
    settings = Settings(database_url=database_url, serve_api=False, metrics_address="127.0.0.1:0")
    async for service in _metered(settings, gates):
        assert service.server is None
        samples = await scrape(service)
        assert value(samples, "lrod_database_up") == 1
        assert value(samples, "lrod_queue_depth", job_type="test.noop") == 0
        assert value(samples, "lrod_worker_running_jobs") == 0


def test_each_process_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.submitted("a", created=True)
    labels = {"job_type": "a", "outcome": "created"}
    assert first.registry.get_sample_value("lrod_submits_total", labels) == 1
    assert second.registry.get_sample_value("lrod_submits_total", labels) is None
    assert REGISTRY.get_sample_value("lrod_submits_total", labels) is None


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:0", ("::1", 0)),
        ("localhost:80", ("localhost", 80)),
    ],
)
def test_metrics_address_parses(address, expected) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9464", "127.0.0.1:", ":9464", "127.0.0.1:http", "h:70000"])
def test_malformed_metrics_address_is_refused(address) -> None:
    with pytest.raises(ValueError, match="host:port"):
        parse_address(address)


async def test_a_batch_counts_each_of_its_jobs(idle) -> None:
    """BatchSubmit counts its jobs per job type and outcome, in one step."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{idle.port}") as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        noop = job_service_pb2.SubmitRequest(job_type="test.noop")
        noop.input.Pack(empty_pb2.Empty())
        sleep = job_service_pb2.SubmitRequest(job_type="examples.sleep")
        sleep.input.Pack(ex.SleepJob(steps=1))
        batch = job_service_pb2.BatchSubmitRequest(
            requests=[noop, sleep, noop, noop], request_id=str(uuid.uuid4())
        )
        await jobs.BatchSubmit(batch)
        await jobs.BatchSubmit(batch)  # a retry: every member repeated
        samples = await scrape(idle)
    submits = "lrod_submits_total"
    assert value(samples, submits, job_type="test.noop", outcome="created") == 3
    assert value(samples, submits, job_type="examples.sleep", outcome="created") == 1
    assert value(samples, submits, job_type="test.noop", outcome="repeated") == 3
    assert value(samples, submits, job_type="examples.sleep", outcome="repeated") == 1
