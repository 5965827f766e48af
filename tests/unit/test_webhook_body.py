"""The webhook body: the final Operation in the proto3 JSON mapping, the same
on every attempt (the delivery's own state stays out of it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from google.protobuf import any_pb2, empty_pb2

from lrod.domain.operation import Operation, Payload
from lrod.domain.states import State
from lrod.domain.webhooks import Delivery, DeliveryState
from lrod.webhooks.dispatcher import body_of

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _done(result: Payload) -> Operation:
    return Operation(
        id="abc",
        owner="o",
        job_type="t",
        state=State.SUCCEEDED,
        input=Payload("type.googleapis.com/google.protobuf.Empty", b""),
        create_time=NOW,
        update_time=NOW,
        run_after=NOW,
        attempt=1,
        end_time=NOW,
        result=result,
        notify_url="https://hooks.example.com/x",
        delivery=Delivery(
            "abc", "msg_abc", "https://hooks.example.com/x", DeliveryState.PENDING, 3, NOW
        ),
    )


def test_the_body_is_the_final_operation_without_the_delivery() -> None:
    packed = any_pb2.Any()
    packed.Pack(empty_pb2.Empty())
    body = json.loads(body_of(_done(Payload(packed.type_url, packed.value))))
    assert body["name"] == "operations/abc"
    assert body["done"] is True
    assert body["response"] == {"@type": "type.googleapis.com/google.protobuf.Empty"}
    # Not read from the store: shown as pending, attempts 0, on every attempt alike.
    assert body["metadata"]["webhook"]["state"] == "STATE_PENDING"
    assert "attempts" not in body["metadata"]["webhook"]


def test_a_response_type_this_process_does_not_know_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        body_of(_done(Payload("type.googleapis.com/nowhere.Unknown", b"")))
