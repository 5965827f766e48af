"""Submission rules: labels, request ids, priority, dedupe keys, timeouts, and
the idempotency fingerprint."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lrod.domain.operation import Payload
from lrod.domain.submission import (
    MAX_DEDUPE_KEY,
    MAX_LABELS,
    MAX_PRIORITY,
    MIN_PRIORITY,
    NewJob,
    dedupe_key_violations,
    label_violations,
    priority_violations,
    request_id_violations,
    timeout_violations,
)

NOW = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
INPUT_TYPE = "type.googleapis.com/lrod.v1.ExportInput"


def _job(**changes: Any) -> NewJob:
    job = NewJob(
        id="AAAAAAAAAAAAAAAAAAAAAA",
        owner="alice",
        job_type="export",
        input=Payload(INPUT_TYPE, b"\x0a\x03abc"),
        max_attempts=3,
        create_time=NOW,
        run_after=NOW,
        priority=5,
        labels={"env": "prod", "team": "data"},
        timeout=timedelta(minutes=5),
        request_id="6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2d10",
        dedupe_key="nightly-2024-05-06",
        schedule_time=NOW + timedelta(hours=1),
    )
    return dataclasses.replace(job, **changes)


# Labels ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({}, id="none"),
        pytest.param({"env": "prod"}, id="simple"),
        pytest.param({"a": ""}, id="empty-value"),
        pytest.param({"k": "0"}, id="digit-value"),
        pytest.param({"a1_b-c": "x_y-z9"}, id="all-allowed-chars"),
        pytest.param({"k" * 63: "v" * 63}, id="longest"),
        pytest.param({f"k{i}": "v" for i in range(MAX_LABELS)}, id="most-labels"),
    ],
)
def test_valid_labels(labels: dict[str, str]) -> None:
    assert label_violations(labels) == []


def test_too_many_labels() -> None:
    labels = {f"k{i}": "v" for i in range(MAX_LABELS + 1)}
    problems = label_violations(labels)
    assert [(p.field, p.reason) for p in problems] == [("labels", "TOO_MANY_LABELS")]
    assert str(MAX_LABELS) in problems[0].description


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("k" * 64, id="too-long"),
        pytest.param("1abc", id="leading-digit"),
        pytest.param("_abc", id="leading-underscore"),
        pytest.param("-abc", id="leading-dash"),
        pytest.param("Env", id="uppercase"),
        pytest.param("en v", id="space"),
        pytest.param("env.x", id="dot"),
        pytest.param("env/x", id="slash"),
        pytest.param("énv", id="non-ascii"),
        pytest.param("env\n", id="trailing-newline"),
    ],
)
def test_invalid_label_keys(key: str) -> None:
    problems = label_violations({key: "ok"})
    assert [(p.field, p.reason) for p in problems] == [(f"labels[{key!r}]", "INVALID_LABEL")]
    assert "keys" in problems[0].description


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("v" * 64, id="too-long"),
        pytest.param("Prod", id="uppercase"),
        pytest.param("a b", id="space"),
        pytest.param("a.b", id="dot"),
        pytest.param("a:b", id="colon"),
        pytest.param("ü", id="non-ascii"),
        pytest.param("ok\n", id="trailing-newline"),
    ],
)
def test_invalid_label_values(value: str) -> None:
    problems = label_violations({"env": value})
    assert [(p.field, p.reason) for p in problems] == [("labels['env']", "INVALID_LABEL")]
    assert "values" in problems[0].description


def test_bad_key_and_value_are_both_reported() -> None:
    problems = label_violations({"Bad": "Bad"})
    assert len(problems) == 2
    assert {p.description.split()[0] for p in problems} == {"keys", "values"}


def test_every_problem_is_reported_in_key_order() -> None:
    labels = {f"k{i}": "v" for i in range(MAX_LABELS)} | {"Zed": "x", "Abc": "x"}
    problems = label_violations(labels)
    assert [p.field for p in problems] == ["labels", "labels['Abc']", "labels['Zed']"]


# Request ids ----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("", id="absent"),
        pytest.param("6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2d10", id="v4"),
        pytest.param(str(uuid.uuid4()), id="random-v4"),
        pytest.param(str(uuid.uuid1()), id="v1"),
        pytest.param("6F1C0E4E-8D7B-4C55-9A3E-0B8F4A7E2D10", id="uppercase"),
    ],
)
def test_valid_request_ids(request_id: str) -> None:
    assert request_id_violations(request_id) == []


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("abc", id="word"),
        pytest.param("1", id="digit"),
        pytest.param("6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2d1", id="one-short"),
        pytest.param("6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2d100", id="one-long"),
        pytest.param("6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2dzz", id="non-hex"),
        pytest.param(" ", id="space"),
    ],
)
def test_invalid_request_ids(request_id: str) -> None:
    problems = request_id_violations(request_id)
    assert [(p.field, p.reason) for p in problems] == [("request_id", "INVALID_REQUEST_ID")]


@pytest.mark.parametrize(
    "request_id",
    [
        pytest.param("{6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2d10}", id="braces"),
        pytest.param("urn:uuid:6f1c0e4e-8d7b-4c55-9a3e-0b8f4a7e2d10", id="urn"),
        pytest.param("6f1c0e4e8d7b4c559a3e0b8f4a7e2d10", id="no-hyphens"),
        pytest.param("1" + "-" * 500 + "2345678123456781234567812345678", id="many-dashes"),
        pytest.param("+2345678123456781234567812345678", id="plus-sign"),
        pytest.param("1_345678123456781234567812345678", id="underscore"),
    ],
)
def test_non_uuid_request_ids_that_uuid_module_tolerates(request_id: str) -> None:
    assert request_id_violations(request_id) != []


# Priority -------------------------------------------------------------------


@pytest.mark.parametrize(
    "priority", [MIN_PRIORITY, MIN_PRIORITY + 1, 0, MAX_PRIORITY - 1, MAX_PRIORITY]
)
def test_valid_priorities(priority: int) -> None:
    assert priority_violations(priority) == []


@pytest.mark.parametrize("priority", [MIN_PRIORITY - 1, MAX_PRIORITY + 1, -(2**31), 2**31 - 1])
def test_invalid_priorities(priority: int) -> None:
    problems = priority_violations(priority)
    assert [(p.field, p.reason) for p in problems] == [("priority", "INVALID_PRIORITY")]
    assert str(MIN_PRIORITY) in problems[0].description
    assert str(MAX_PRIORITY) in problems[0].description


# Dedupe keys ----------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, MAX_DEDUPE_KEY])
def test_valid_dedupe_keys(length: int) -> None:
    assert dedupe_key_violations("k" * length) == []


@pytest.mark.parametrize("length", [MAX_DEDUPE_KEY + 1, 10 * MAX_DEDUPE_KEY])
def test_over_long_dedupe_keys(length: int) -> None:
    problems = dedupe_key_violations("k" * length)
    assert [(p.field, p.reason) for p in problems] == [("dedupe_key", "INVALID_DEDUPE_KEY")]


# Timeouts -------------------------------------------------------------------

MAXIMUM = timedelta(hours=1)


@pytest.mark.parametrize(
    "timeout",
    [None, timedelta(microseconds=1), timedelta(seconds=1), MAXIMUM],
)
def test_valid_timeouts(timeout: timedelta | None) -> None:
    assert timeout_violations(timeout, MAXIMUM) == []


@pytest.mark.parametrize(
    ("timeout", "words"),
    [
        (timedelta(0), "positive"),
        (timedelta(seconds=-1), "positive"),
        (MAXIMUM + timedelta(microseconds=1), "at most 3600s"),
        (timedelta(days=2), "at most 3600s"),
    ],
)
def test_invalid_timeouts(timeout: timedelta, words: str) -> None:
    problems = timeout_violations(timeout, MAXIMUM)
    assert [(p.field, p.reason) for p in problems] == [("timeout", "INVALID_TIMEOUT")]
    assert words in problems[0].description


# Fingerprint ----------------------------------------------------------------


def test_fingerprint_is_equal_for_equal_requests() -> None:
    assert _job().fingerprint() == _job().fingerprint()
    assert len(_job().fingerprint()) == 64


def test_fingerprint_ignores_label_insertion_order() -> None:
    forward = _job(labels={"a": "1", "b": "2", "c": "3"})
    backward = _job(labels={"c": "3", "b": "2", "a": "1"})
    assert forward.fingerprint() == backward.fingerprint()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"id": "BBBBBBBBBBBBBBBBBBBBBB"}, id="id"),
        pytest.param({"create_time": NOW + timedelta(seconds=3)}, id="create_time"),
        pytest.param({"run_after": NOW + timedelta(minutes=7)}, id="run_after"),
        pytest.param({"owner": "bob"}, id="owner"),
        pytest.param({"max_attempts": 9}, id="max_attempts"),
        pytest.param({"request_id": "11111111-2222-4333-8444-555555555555"}, id="request_id"),
    ],
)
def test_fingerprint_ignores_server_chosen_fields(changes: dict[str, Any]) -> None:
    # The request_id is the key the fingerprint is stored under, not part of the request.
    assert _job(**changes).fingerprint() == _job().fingerprint()


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"job_type": "import"}, id="job_type"),
        pytest.param(
            {"input": Payload("type.googleapis.com/lrod.v1.Other", b"\x0a\x03abc")}, id="input-type"
        ),
        pytest.param({"input": Payload(INPUT_TYPE, b"\x0a\x03abd")}, id="input-value"),
        pytest.param({"input": Payload(INPUT_TYPE, b"")}, id="input-empty"),
        pytest.param({"priority": 6}, id="priority"),
        pytest.param({"priority": 0}, id="priority-default"),
        pytest.param({"labels": {"env": "prod"}}, id="label-removed"),
        pytest.param({"labels": {"env": "dev", "team": "data"}}, id="label-value"),
        pytest.param({"labels": {"env": "prod", "tean": "data"}}, id="label-key"),
        pytest.param({"labels": {"env": "prod", "team": "data", "x": ""}}, id="label-added"),
        pytest.param({"timeout": timedelta(minutes=6)}, id="timeout"),
        pytest.param({"timeout": None}, id="timeout-absent"),
        pytest.param({"schedule_time": NOW + timedelta(hours=2)}, id="schedule_time"),
        pytest.param({"schedule_time": None}, id="schedule-absent"),
        pytest.param({"dedupe_key": "nightly-2024-05-07"}, id="dedupe_key"),
        pytest.param({"dedupe_key": None}, id="dedupe-absent"),
    ],
)
def test_fingerprint_differs_when_a_caller_field_differs(changes: dict[str, Any]) -> None:
    assert _job(**changes).fingerprint() != _job().fingerprint()
