"""Completion webhooks end to end: the real server and workers on SQLite and
PostgreSQL, a real receiver on 127.0.0.1 that verifies every signature with
the Standard Webhooks library."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from google.longrunning import operations_pb2
from google.protobuf import empty_pb2, json_format, timestamp_pb2, wrappers_pb2

from lrod.app import Service
from lrod.jobs.registry import JobType
from lrod.v1 import job_service_pb2
from tests.helpers import metadata, pack
from tests.jobs import Gates, build_registry
from tests.webhooks.receiver import Receiver
from tests.webhooks.support import Delivery, hooked, hooked_settings, shorter

pytestmark = pytest.mark.slow


def _sample(service, name: str, **labels: str) -> float | None:
    return service.metrics.registry.get_sample_value(name, labels)


async def test_success_failure_and_cancellation_each_delivered_once_with_the_final_operation(
    database_url, receiver
) -> None:
    async with hooked(database_url, http_address="127.0.0.1:0") as h:
        # The HTTP door takes the target in the body.
        assert h.service.http is not None
        body = {
            "jobType": "test.noop",
            "input": {"@type": "type.googleapis.com/google.protobuf.Empty"},
            "notification": {"url": receiver.url("/ok")},
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"http://127.0.0.1:{h.service.http.port}/v1/operations:submit", json=body
            ) as accepted,
        ):
            assert accepted.status == 202
            succeeded_name = (await accepted.json())["name"]
        failed = await h.submit(receiver.url("/ok"), "test.crash", wrappers_pb2.StringValue())
        later = timestamp_pb2.Timestamp()
        later.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
        queued = await h.submit(receiver.url("/ok"), schedule_time=later)
        assert metadata(queued).webhook.state == Delivery.STATE_WAITING
        await h.operations.CancelOperation(operations_pb2.CancelOperationRequest(name=queued.name))
        names = [succeeded_name, failed.name, queued.name]
        ends = [await h.ended(name) for name in names]
        finals = [await h.get(name) for name in names]

    assert receiver.unverified == 0
    for name, end, final in zip(names, ends, finals, strict=True):
        assert end.state == Delivery.STATE_DELIVERED, name
        assert (end.attempts, end.last_http_status, end.last_error) == (1, 200, "")
        assert end.webhook_id == f"msg_{name.removeprefix('operations/')}"
        [got] = receiver.of(end.webhook_id)  # once
        sent = operations_pb2.Operation()
        json_format.ParseDict(got.payload, sent)
        assert sent.name == name
        assert sent.done
        assert sent.error == final.error
        assert sent.response == final.response
    assert not finals[0].HasField("error")
    assert finals[1].error.code == 13  # INTERNAL: the crash
    assert finals[2].error.code == 1  # CANCELLED


async def test_retries_keep_the_webhook_id_with_growing_gaps(database_url, receiver) -> None:
    async with hooked(database_url) as h:
        op = await h.submit(receiver.url("/flaky/3"))
        end = await h.ended(op.name)
    # Read once the service has stopped, which waits for the deliveries in
    # flight: the delivered counter moves just after the row is written, so
    # a reader can see DELIVERED a moment before it.
    delivered = _sample(h.service, "lrod_webhook_deliveries_total", outcome="delivered")
    errors = _sample(h.service, "lrod_webhook_attempts_total", outcome="http_error")
    assert end.state == Delivery.STATE_DELIVERED
    assert end.attempts == 4
    calls = receiver.of(end.webhook_id)
    assert [c.path for c in calls] == ["/flaky/3"] * 4
    assert receiver.unverified == 0
    gaps = [b.at - a.at for a, b in itertools.pairwise(calls)]
    # Never sooner than the schedule's 0.2, 0.4, 0.8 s less 20% jitter.
    for gap, least in zip(gaps, (0.16, 0.32, 0.64), strict=True):
        assert gap >= least
    assert (delivered, errors) == (1, 3)


async def test_a_receiver_down_for_a_while_gets_it_once_up(database_url) -> None:
    down = Receiver()
    await down.start()
    port = down.port
    await down.stop()  # nothing listens on the port now
    later = Receiver()
    async with hooked(database_url, shorter(schedule="0.2,0.4,0.8,1.6,3.2")) as h:
        op = await h.submit(f"http://127.0.0.1:{port}/ok")
        refused = await h.wait_delivery(op.name, lambda d: d.attempts >= 2)
        await later.start(port)
        try:
            end = await h.ended(op.name)
        finally:
            await later.stop()
    assert refused.last_error == "CONNECTION_FAILED"
    assert refused.last_http_status == 0
    assert end.state == Delivery.STATE_DELIVERED
    assert end.attempts >= 3
    assert len(later.of(end.webhook_id)) == 1


async def test_a_receiver_answering_500_forever_is_marked_failed(database_url, receiver) -> None:
    async with hooked(database_url, shorter(schedule="0.1,0.2")) as h:
        op = await h.submit(receiver.url("/fail"))
        end = await h.ended(op.name)
    failed = _sample(h.service, "lrod_webhook_deliveries_total", outcome="failed")  # as above
    assert end.state == Delivery.STATE_FAILED
    assert (end.attempts, end.last_http_status, end.last_error) == (3, 500, "HTTP_500")
    assert end.HasField("end_time")
    assert not end.HasField("next_attempt_time")
    assert len(receiver.of(end.webhook_id)) == 3
    assert failed == 1


async def test_a_slow_receiver_is_timed_out(database_url, receiver) -> None:
    async with hooked(database_url, shorter(schedule="0.1", timeout=0.3)) as h:
        op = await h.submit(receiver.url("/slow"))
        end = await h.ended(op.name)
    timeouts = _sample(h.service, "lrod_webhook_attempts_total", outcome="timeout")
    assert end.state == Delivery.STATE_FAILED
    assert (end.attempts, end.last_http_status, end.last_error) == (2, 0, "TIMEOUT")
    assert timeouts == 2


async def test_a_redirect_is_not_followed(database_url, receiver) -> None:
    async with hooked(database_url, shorter(schedule="0.1")) as h:
        op = await h.submit(receiver.url("/redirect"))
        end = await h.ended(op.name)
    assert end.state == Delivery.STATE_FAILED
    assert (end.last_http_status, end.last_error) == (302, "HTTP_302")
    # Only the receiver was called (twice), never the address it pointed to.
    assert [c.path for c in receiver.of(end.webhook_id)] == ["/redirect", "/redirect"]


async def test_deliveries_are_purged_with_their_operation(database_url, receiver) -> None:
    async with hooked(database_url) as h:
        op = await h.submit(receiver.url("/ok"))
        await h.ended(op.name)
        await h.operations.DeleteOperation(operations_pb2.DeleteOperationRequest(name=op.name))
        left = await h.service.store.deliveries(None, 10)
    assert left == []


async def _noop(_ctx, _message) -> empty_pb2.Empty:
    return empty_pb2.Empty()


def _hooked_type(url: str) -> JobType:
    return JobType("test.hooked", _noop, empty_pb2.Empty, empty_pb2.Empty, default_notify_url=url)


async def test_a_job_type_default_target_is_used_when_submit_names_none(
    database_url, receiver
) -> None:
    async with hooked(database_url, extra=[_hooked_type(receiver.url("/ok"))]) as h:
        op = await h.jobs.Submit(
            job_service_pb2.SubmitRequest(job_type="test.hooked", input=pack(empty_pb2.Empty()))
        )
        end = await h.ended(op.name)
    assert end.state == Delivery.STATE_DELIVERED
    assert end.url == receiver.url("/ok")
    assert len(receiver.of(end.webhook_id)) == 1


def test_a_default_target_the_rules_refuse_stops_the_start(tmp_path) -> None:
    registry = build_registry(Gates())
    registry.register(_hooked_type("https://169.254.169.254/latest/"))
    settings = hooked_settings(f"sqlite:///{tmp_path / 'lrod.db'}", shorter())
    with pytest.raises(ValueError, match=r"default_notify_url of test\.hooked"):
        Service(settings, registry)


async def test_a_slow_receiver_holds_only_its_own_hosts_slots(database_url, receiver) -> None:
    # One slot per host: a slow receiver's delivery holds 127.0.0.1's only
    # slot; a second one to it waits, while one to another host name
    # (localhost, which resolves to the allowed 127.0.0.1) goes ahead.
    async with hooked(database_url, shorter(per_host=1, timeout=4.0, schedule="0.1")) as h:
        slow = await h.submit(receiver.url("/slow"))
        await receiver.wait_for(lambda: any(r.path == "/slow" for r in receiver.received))
        second = await h.submit(receiver.url("/slow"))
        quick = await h.submit(f"http://localhost:{receiver.port}/ok")
        quick_end = await h.ended(quick.name)
        slow_now = await h.delivery(slow.name)
        second_now = await h.delivery(second.name)
        slow_calls = [r for r in receiver.received if r.path == "/slow"]
        receiver.release()  # the stop need not wait out the slow delivery's timeout
    assert quick_end.state == Delivery.STATE_DELIVERED
    assert slow_now.attempts == 0  # its first attempt is still under way
    assert (second_now.state, second_now.attempts) == (Delivery.STATE_PENDING, 0)
    assert len(slow_calls) == 1
