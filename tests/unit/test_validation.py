"""BatchSubmit's validation shares one check among requests alike in all
but their request_id (validation._alike): each member must get exactly what
Submit's validation of it alone gives, the same NewJob (but its new id) or
the same violations in the same order, named by its place in the batch."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf import duration_pb2, timestamp_pb2

from lrod.api import validation
from lrod.api.validation import new_job, new_jobs
from lrod.domain.errors import InvalidArgument
from lrod.domain.submission import NewJob
from lrod.examples.v1 import examples_pb2 as ex
from lrod.jobs.examples import registry
from lrod.v1 import job_service_pb2
from tests.helpers import pack

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)
OWNER = "alice"


def _sleep(steps: int = 1, **fields: object) -> job_service_pb2.SubmitRequest:
    return job_service_pb2.SubmitRequest(
        job_type="examples.sleep", input=pack(ex.SleepJob(steps=steps)), **fields
    )


def _requests() -> list[job_service_pb2.SubmitRequest]:
    """Alike ones (same but for request_id, some of those bad), and ones
    differing in each field the shared check reads."""
    later = timestamp_pb2.Timestamp()
    later.FromDatetime(NOW + timedelta(hours=2))
    too_late = timestamp_pb2.Timestamp()
    too_late.FromDatetime(NOW + timedelta(days=400))
    base = [
        _sleep(),
        _sleep(request_id=str(uuid.uuid4())),
        _sleep(request_id="not-a-uuid"),
        _sleep(steps=2),
        _sleep(steps=-1),  # invalid input
        _sleep(steps=-1, request_id="bad"),
        _sleep(labels={"team": "data", "tier": "gold"}),
        _sleep(labels={"tier": "gold", "team": "data"}),
        _sleep(labels={"Bad": "x"}, priority=500, request_id="also-bad"),
        _sleep(priority=-3),
        _sleep(schedule_time=later),
        _sleep(schedule_time=too_late),
        _sleep(timeout=duration_pb2.Duration(seconds=3, nanos=5)),
        _sleep(timeout=duration_pb2.Duration(seconds=3, nanos=6)),
        _sleep(timeout=duration_pb2.Duration(seconds=10**6)),  # above the limit
        _sleep(dedupe_key="k"),
        _sleep(notification=job_service_pb2.NotificationTarget(url="https://example.com/h")),
        _sleep(notification=job_service_pb2.NotificationTarget(url="http://127.0.0.1/h")),
        job_service_pb2.SubmitRequest(job_type="examples.sleep"),  # no input
        job_service_pb2.SubmitRequest(job_type="no.such.job", input=pack(ex.SleepJob())),
        job_service_pb2.SubmitRequest(input=pack(ex.SleepJob())),
        job_service_pb2.SubmitRequest(job_type="examples.sleep", input=pack(ex.FlakyJob())),
    ]
    # Each again with a request_id of its own: requests with one and
    # without are keyed differently (validation._alike).
    named = []
    for request in base:
        copy = job_service_pb2.SubmitRequest()
        copy.CopyFrom(request)
        copy.request_id = copy.request_id or str(uuid.uuid4())
        named.append(copy)
    return base + named + base[::-1] + named[::-1]


def _alone(request: job_service_pb2.SubmitRequest) -> NewJob | InvalidArgument:
    try:
        return new_job(request, registry, OWNER, NOW)
    except InvalidArgument as error:
        return error


def test_alike_reads_every_field_but_request_id() -> None:
    fields = {f.name for f in job_service_pb2.SubmitRequest.DESCRIPTOR.fields}
    assert set(validation.ALIKE_FIELDS) == fields - {"request_id"}


def test_each_member_gets_what_it_gets_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compared with the batch's own copies: a copied map may iterate in
    # another order than its original.
    requests = list(job_service_pb2.BatchSubmitRequest(requests=_requests()).requests)
    alone = [_alone(r) for r in requests]
    with pytest.raises(InvalidArgument) as caught:
        new_jobs(job_service_pb2.BatchSubmitRequest(requests=requests), registry, OWNER, NOW)
    expected = [
        (f"requests[{i}].{v.field}", v.description, v.reason)
        for i, error in enumerate(alone)
        if isinstance(error, InvalidArgument)
        for v in error.violations
    ]
    assert len(expected) > validation.MAX_BATCH_VIOLATIONS
    shown = [(v.field, v.description, v.reason) for v in caught.value.violations]
    assert shown == expected[: validation.MAX_BATCH_VIOLATIONS]
    assert caught.value.reason == expected[0][2]
    # Every member's violations, not just the first shown: the mirrored
    # half, where the shared check is reused, comes after the cap.
    monkeypatch.setattr(validation, "MAX_BATCH_VIOLATIONS", len(expected) + 1)
    with pytest.raises(InvalidArgument) as caught:
        new_jobs(job_service_pb2.BatchSubmitRequest(requests=requests), registry, OWNER, NOW)
    assert [(v.field, v.description, v.reason) for v in caught.value.violations] == expected

    # The valid ones, as a batch of their own: the jobs Submit makes of them.
    valid = [r for r, a in zip(requests, alone, strict=True) if isinstance(a, NewJob)]
    batch = job_service_pb2.BatchSubmitRequest(requests=valid)
    valid = list(batch.requests)
    jobs = new_jobs(batch, registry, OWNER, NOW)
    assert len({job.id for job in jobs}) == len(jobs) == len(valid)
    for job, request in zip(jobs, valid, strict=True):
        reference = _alone(request)
        assert isinstance(reference, NewJob)
        assert set(job.__dict__) == {f.name for f in dataclasses.fields(NewJob)}
        assert job == dataclasses.replace(reference, id=job.id)
        assert list(job.labels.items()) == list(reference.labels.items())


def test_a_member_violations_are_in_submits_order() -> None:
    """A request_id's violation sits between the input's and the options'."""
    bad = _sleep(steps=-1, priority=500, request_id="nope")
    alone = _alone(bad)
    assert isinstance(alone, InvalidArgument)
    assert [v.field for v in alone.violations] == ["input.steps", "request_id", "priority"]
    with pytest.raises(InvalidArgument) as caught:
        new_jobs(
            job_service_pb2.BatchSubmitRequest(requests=[_sleep(steps=-1, priority=500), bad]),
            registry,
            OWNER,
            NOW,
        )
    assert [v.field for v in caught.value.violations] == [
        "requests[0].input.steps",
        "requests[0].priority",
        "requests[1].input.steps",
        "requests[1].request_id",
        "requests[1].priority",
    ]
