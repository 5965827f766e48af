"""SubmitRequest checked and turned into a NewJob; every problem is reported
as a field violation at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError

from lrod.domain.errors import FieldViolation, InvalidArgument
from lrod.domain.names import new_operation_id, new_operation_ids
from lrod.domain.operation import Payload
from lrod.domain.submission import (
    MAX_BATCH,
    NewJob,
    dedupe_key_violations,
    label_violations,
    priority_violations,
    request_id_violations,
    timeout_violations,
)
from lrod.domain.webhooks import AddressRules, target_violations
from lrod.jobs.registry import JobType, Registry
from lrod.v1 import job_service_pb2

MAX_SCHEDULE_AHEAD = timedelta(days=366)
# google.protobuf.Duration's own range: about 10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000


def duration_seconds(duration: duration_pb2.Duration) -> float | None:
    """The Duration in seconds, or None when it is outside Duration's range
    (checked before any conversion, which would overflow)."""
    if not -MAX_DURATION_SECONDS <= duration.seconds <= MAX_DURATION_SECONDS:
        return None
    if not -999_999_999 <= duration.nanos <= 999_999_999:
        return None
    if duration.seconds * duration.nanos < 0:
        return None  # the signs must agree
    return duration.seconds + duration.nanos / 1e9


# A batch's error lists at most this many field violations: its status and
# details travel in the trailers, which grpc bounds (8 KB by default).
MAX_BATCH_VIOLATIONS = 10


def new_jobs(
    request: job_service_pb2.BatchSubmitRequest,
    registry: Registry,
    owner: str,
    now: datetime,
    rules: AddressRules | None = None,
) -> list[NewJob]:
    """Each request checked by Submit's rules; a violation names its request,
    e.g. `requests[3].job_type`.

    Requests alike in everything but their request_id (`_alike`) share one
    check of the rest: the checks are functions of the request alone (with
    the owner, the clock's `now` and the rules, the same for the whole
    batch), so each request gets the result, and the violations, it would
    get alone. Each request_id is checked for itself."""
    problems: list[FieldViolation] = []
    if not request.requests:
        problems.append(FieldViolation("requests", "is required", "MISSING_REQUESTS"))
    elif len(request.requests) > MAX_BATCH:
        problems.append(
            FieldViolation("requests", f"at most {MAX_BATCH} per call", "TOO_MANY_REQUESTS")
        )
    problems += request_id_violations(request.request_id)
    if problems:
        raise InvalidArgument.of(problems)
    jobs: list[NewJob] = []
    checked: dict[bytes | tuple[Any, ...], _Checked] = {}
    ids = new_operation_ids(len(request.requests))
    for index, item in enumerate(request.requests):
        key = _alike(item)
        shared = checked.get(key)
        if shared is None:
            shared = checked[key] = _check(item, registry, owner, now, rules)
        try:
            jobs.append(shared.job(item.request_id, ids[index]))
        except InvalidArgument as error:
            problems += [
                FieldViolation(f"requests[{index}].{v.field}", v.description, v.reason)
                for v in error.violations
            ]
    if problems:
        shown = problems[:MAX_BATCH_VIOLATIONS]
        message = InvalidArgument.of(problems).message
        raise InvalidArgument(message, reason=shown[0].reason, violations=shown)
    return jobs


# The fields of a SubmitRequest that `_alike` compares, by name; all but
# request_id (tests/api/test_validation.py holds this to the message's
# fields, so a field added to SubmitRequest must be added here).
ALIKE_FIELDS = (
    "job_type", "input", "labels", "priority", "schedule_time", "timeout", "dedupe_key",
    "notification",
)  # fmt: skip


def _alike(request: job_service_pb2.SubmitRequest) -> bytes | tuple[Any, ...]:
    """Equal for two requests equal in every field but request_id (and for
    no two others): what `_check` reads of them. Without a request_id or
    labels, the request's own deterministic bytes (a third of the time;
    they sort a map's keys, and a NewJob keeps its labels' order)."""
    if not request.request_id and not request.labels:
        return request.SerializeToString(deterministic=True)
    packed = request.input if request.HasField("input") else None
    timeout = request.timeout if request.HasField("timeout") else None
    schedule = request.schedule_time if request.HasField("schedule_time") else None
    notification = request.notification if request.HasField("notification") else None
    labels = request.labels
    return (
        request.job_type,
        None if packed is None else (packed.type_url, packed.value),
        tuple(labels.items()) if labels else (),  # in order: the NewJob keeps it
        request.priority,
        None if schedule is None else (schedule.seconds, schedule.nanos),
        None if timeout is None else (timeout.seconds, timeout.nanos),
        request.dedupe_key,
        None if notification is None else notification.SerializeToString(deterministic=True),
    )


_new = object.__new__


class _Checked:
    """A SubmitRequest checked in everything but its request_id: the
    violations found before and after where a request_id's would be listed
    (Submit's order), or the fields of its NewJob but id and request_id."""

    __slots__ = ("after", "before", "fields")

    def __init__(
        self,
        before: list[FieldViolation],
        after: list[FieldViolation],
        fields: dict[str, Any] | None,
    ) -> None:
        self.before = before
        self.after = after
        self.fields = fields

    def job(self, request_id: str, op_id: str) -> NewJob:
        """The NewJob of a request with this request_id, as operation
        `op_id` (a new one for each), or InvalidArgument with every violation, in Submit's order."""
        own = request_id_violations(request_id) if request_id else ()
        fields = self.fields
        if fields is None or own:
            problems = [*self.before, *own, *self.after]
            raise InvalidArgument.of(problems, reason=problems[0].reason)
        # Filled as creates.created fills an Operation (NewJob's frozen
        # __init__ costs several times more); every field is set.
        job = _new(NewJob)
        job.__dict__.update(fields, id=op_id, request_id=request_id or None)
        return job


def new_job(
    request: job_service_pb2.SubmitRequest,
    registry: Registry,
    owner: str,
    now: datetime,
    rules: AddressRules | None = None,
) -> NewJob:
    """`rules`: which webhook targets this server accepts (default: https
    to public addresses only)."""
    return _check(request, registry, owner, now, rules).job(request.request_id, new_operation_id())


def _check(
    request: job_service_pb2.SubmitRequest,
    registry: Registry,
    owner: str,
    now: datetime,
    rules: AddressRules | None,
) -> _Checked:
    """Every check of `request` but its request_id's (`_Checked.job`)."""
    problems: list[FieldViolation] = []
    # Each field read once; the checks of an empty field skipped (they find
    # nothing in one): a Submit runs this on every call.
    type_name, dedupe_key = request.job_type, request.dedupe_key
    job_type = registry.get(type_name)
    payload: Payload | None = None
    if not type_name:
        problems.append(FieldViolation("job_type", "is required", "MISSING_JOB_TYPE"))
    elif job_type is None:
        problems.append(
            FieldViolation(
                "job_type",
                f"unknown job type {type_name[:100]!r}; see ListJobTypes",
                "UNKNOWN_JOB_TYPE",
            )
        )
    else:
        payload = _input(request, job_type, problems)
    before, problems = problems, []
    labels = dict(request.labels) if request.labels else {}
    if labels:
        problems += label_violations(labels)
    problems += priority_violations(request.priority)
    if dedupe_key:
        problems += dedupe_key_violations(dedupe_key)
    timeout = _timeout(request, problems)
    if job_type is not None:
        problems += timeout_violations(timeout, job_type.max_timeout)
    schedule = _schedule(request, now, problems)
    notify_url: str | None = None
    if request.HasField("notification"):
        notify_url = request.notification.url
        problems += target_violations(notify_url, rules or AddressRules())
    elif job_type is not None:
        notify_url = job_type.default_notify_url
    if before or problems:
        return _Checked(before, problems, None)
    assert job_type is not None
    assert payload is not None
    return _Checked(
        before,
        problems,
        {
            "owner": owner,
            "job_type": job_type.name,
            "input": payload,
            "max_attempts": job_type.max_attempts,
            "create_time": now,
            "run_after": max(schedule or now, now),
            "priority": request.priority,
            "labels": labels,
            "timeout": timeout,
            "dedupe_key": dedupe_key or None,
            "schedule_time": schedule,
            "notify_url": notify_url,
        },
    )


def _input(
    request: job_service_pb2.SubmitRequest, job_type: JobType, problems: list[FieldViolation]
) -> Payload | None:
    if not request.HasField("input"):
        problems.append(FieldViolation("input", "is required", "MISSING_INPUT"))
        return None
    # As Any.Is: only the type URL's last segment names the type, whatever
    # the prefix (protobufjs sends "/lrod.examples.v1.SleepJob").
    expected = job_type.input_type.DESCRIPTOR.full_name
    if request.input.type_url.rpartition("/")[2] != expected:
        received = request.input.type_url[:120] or "(empty)"
        problems.append(
            FieldViolation(
                "input",
                f"must be a {expected} for job type {job_type.name}; got type URL {received!r}",
                "WRONG_INPUT_TYPE",
            )
        )
        return None
    try:
        message = job_type.input_type.FromString(request.input.value)
    except DecodeError:
        problems.append(
            FieldViolation(
                "input",
                f"does not decode as {job_type.input_type.DESCRIPTOR.full_name}",
                "UNDECODABLE_INPUT",
            )
        )
        return None
    if job_type.validate is not None:
        found = [
            FieldViolation(f"input.{field}", description, "INVALID_INPUT")
            for field, description in job_type.validate(message)
        ]
        if found:
            problems += found
            return None
    # Re-encoded deterministically, so equal requests have equal fingerprints.
    return Payload(job_type.input_type_url, message.SerializeToString(deterministic=True))


def _timeout(
    request: job_service_pb2.SubmitRequest, problems: list[FieldViolation]
) -> timedelta | None:
    if not request.HasField("timeout"):
        return None
    try:
        return request.timeout.ToTimedelta()
    except (ValueError, OverflowError):
        problems.append(FieldViolation("timeout", "is not a valid duration", "INVALID_TIMEOUT"))
        return None


def _schedule(
    request: job_service_pb2.SubmitRequest, now: datetime, problems: list[FieldViolation]
) -> datetime | None:
    if not request.HasField("schedule_time"):
        return None
    try:
        moment = request.schedule_time.ToDatetime(tzinfo=now.tzinfo)
    except (ValueError, OverflowError):
        problems.append(
            FieldViolation("schedule_time", "is not a valid time", "INVALID_SCHEDULE_TIME")
        )
        return None
    if moment > now + MAX_SCHEDULE_AHEAD:
        problems.append(
            FieldViolation("schedule_time", "at most 366 days ahead", "INVALID_SCHEDULE_TIME")
        )
        return None
    return moment
