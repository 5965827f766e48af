"""A job as submitted, its validation rules, and its idempotency fingerprint."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from lrod.domain.errors import FieldViolation
from lrod.domain.operation import Payload
from lrod.domain.storable import text_violations

MAX_LABELS = 64
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_DEDUPE_KEY = 256
# The most jobs one BatchSubmit takes.
MAX_BATCH = 1000
# Names the request_ids a batch's request_id gives its members.
_BATCH_NAMESPACE = uuid.UUID("5a0c8f43-3f0e-4d7e-9c64-1b0f2f4d8a10")


@dataclass(frozen=True)
class NewJob:
    """Everything the store needs to create an operation."""

    id: str
    owner: str
    job_type: str
    input: Payload
    max_attempts: int
    create_time: datetime
    run_after: datetime
    priority: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    timeout: timedelta | None = None
    request_id: str | None = None
    dedupe_key: str | None = None
    schedule_time: datetime | None = None
    # Where the completion webhook goes (None: no webhook).
    notify_url: str | None = None

    def fingerprint(self) -> str:
        """A digest of what the caller asked for, to tell a repeat from a reuse
        of the same request_id (AIP-155). Server-chosen fields stay out."""
        body = {
            "job_type": self.job_type,
            "input_type": self.input.type_url,
            "input": self.input.value.hex(),
            "labels": sorted(self.labels.items()),
            "priority": self.priority,
            "schedule_time": self.schedule_time.isoformat() if self.schedule_time else None,
            "timeout": self.timeout.total_seconds() if self.timeout is not None else None,
            "dedupe_key": self.dedupe_key,
        }
        if self.notify_url is not None:  # absent keeps older fingerprints valid
            body["notify_url"] = self.notify_url
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def batch_members(jobs: Sequence[NewJob], batch_request_id: str | None) -> list[tuple[NewJob, str]]:
    """The jobs of one BatchSubmit with the fingerprint each is stored under.

    A member with a request_id of its own is idempotent by it, as in Submit.
    With a batch request_id, every other member gets a request_id derived
    from it and its place in the batch, and a fingerprint of the whole batch:
    a retry of the same batch finds each member stored, and a reuse of the
    batch's request_id for a different batch is refused at every member."""
    if not batch_request_id:
        return [(job, job.fingerprint() if job.request_id else "") for job in jobs]
    own = [job.fingerprint() + (job.request_id or "") for job in jobs]
    whole = hashlib.sha256("\n".join(own).encode()).hexdigest()
    members: list[tuple[NewJob, str]] = []
    for index, job in enumerate(jobs):
        if job.request_id:
            members.append((job, job.fingerprint()))
            continue
        derived = str(uuid.uuid5(_BATCH_NAMESPACE, f"{batch_request_id.lower()}/{index}"))
        members.append((replace(job, request_id=derived), whole))
    return members


def label_violations(labels: Mapping[str, str]) -> list[FieldViolation]:
    problems: list[FieldViolation] = []
    if len(labels) > MAX_LABELS:
        problems.append(FieldViolation("labels", f"at most {MAX_LABELS} labels", "TOO_MANY_LABELS"))
    for key, value in sorted(labels.items()):
        if not LABEL_KEY.fullmatch(key):
            problems.append(
                FieldViolation(
                    f"labels[{key!r}]",
                    "keys are 1-63 characters of [a-z0-9_-], starting with a letter",
                    "INVALID_LABEL",
                )
            )
        if not LABEL_VALUE.fullmatch(value):
            problems.append(
                FieldViolation(
                    f"labels[{key!r}]",
                    "values are 0-63 characters of [a-z0-9_-]",
                    "INVALID_LABEL",
                )
            )
    return problems


def request_id_violations(request_id: str) -> list[FieldViolation]:
    if not request_id:
        return []
    # Only the canonical 8-4-4-4-12 form: uuid.UUID alone also takes braces,
    # URNs, missing or extra hyphens, and so one id spelt several ways.
    try:
        canonical = str(uuid.UUID(request_id))
    except ValueError:
        canonical = ""
    if canonical != request_id.lower():
        return [
            FieldViolation(
                "request_id",
                "must be a UUID such as 123e4567-e89b-12d3-a456-426614174000",
                "INVALID_REQUEST_ID",
            )
        ]
    return []


def priority_violations(priority: int) -> list[FieldViolation]:
    if MIN_PRIORITY <= priority <= MAX_PRIORITY:
        return []
    return [
        FieldViolation(
            "priority", f"must be from {MIN_PRIORITY} to {MAX_PRIORITY}", "INVALID_PRIORITY"
        )
    ]


def dedupe_key_violations(dedupe_key: str) -> list[FieldViolation]:
    if len(dedupe_key) > MAX_DEDUPE_KEY:
        return [
            FieldViolation(
                "dedupe_key", f"at most {MAX_DEDUPE_KEY} characters", "INVALID_DEDUPE_KEY"
            )
        ]
    return text_violations("dedupe_key", dedupe_key, "INVALID_DEDUPE_KEY")


def timeout_violations(timeout: timedelta | None, maximum: timedelta) -> list[FieldViolation]:
    if timeout is None:
        return []
    if timeout <= timedelta(0):
        return [FieldViolation("timeout", "must be positive", "INVALID_TIMEOUT")]
    if timeout > maximum:
        return [
            FieldViolation(
                "timeout",
                f"at most {maximum.total_seconds():g}s for this job type",
                "INVALID_TIMEOUT",
            )
        ]
    return []
