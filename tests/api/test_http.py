"""The HTTP/JSON front door speaks the seed's shape: 202 + Location +
Retry-After, 303 to the result, 410 after expiry, Idempotency-Key, AIP-193
error JSON; the paths are the protos' google.api.http annotations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from lrod.app import Service
from lrod.http.server import HttpFrontDoor
from tests.helpers import http_session


@pytest.fixture
async def http(service: Service) -> AsyncIterator[aiohttp.ClientSession]:
    async with http_session(service.manager) as session:
        yield session


def _sleep(seconds: str = "0.3s", steps: int = 3) -> dict:
    return {
        "jobType": "examples.sleep",
        "input": {
            "@type": "type.googleapis.com/lrod.examples.v1.SleepJob",
            "duration": seconds,
            "steps": steps,
        },
    }


async def _poll(http: aiohttp.ClientSession, location: str) -> aiohttp.ClientResponse:
    async with asyncio.timeout(15):
        while True:
            response = await http.get(location, allow_redirects=False)
            if response.status != 200:
                return response
            assert int(response.headers["Retry-After"]) >= 1
            await asyncio.sleep(0.1)


async def test_submit_poll_and_follow_the_redirect_to_the_result(http) -> None:
    accepted = await http.post("/v1/operations:submit", json=_sleep())
    assert accepted.status == 202
    location = accepted.headers["Location"]
    # Absolute (RFC 9110 allows relative, but fetch in Node does not follow those).
    assert re.fullmatch(r"http://127\.0\.0\.1:[0-9]+/v1/operations/[\w-]{22}", location)
    assert int(accepted.headers["Retry-After"]) >= 1
    body = await accepted.json()
    assert not body.get("done", False)  # proto3 JSON omits a false done
    assert body["metadata"]["state"] == "QUEUED"
    assert location.endswith(f"/v1/{body['name']}")

    finished = await _poll(http, location)
    assert finished.status == 303
    assert finished.headers["Location"] == f"{location}:result"
    result = await http.get(finished.headers["Location"])
    assert result.status == 200
    assert await result.json() == {
        "@type": "type.googleapis.com/lrod.examples.v1.SleepResult",
        "stepsDone": 3,
    }

    # REST clients of google.longrunning can ask for the Operation itself.
    plain = await http.get(f"{location}?view=operation", allow_redirects=False)
    assert plain.status == 200
    assert (await plain.json())["done"] is True


async def test_failed_job_result_is_aip193_error_json(http) -> None:
    accepted = await http.post(
        "/v1/operations:submit",
        json={
            "jobType": "examples.flaky",
            "input": {"@type": "type.googleapis.com/lrod.examples.v1.FlakyJob", "permanent": True},
        },
    )
    finished = await _poll(http, accepted.headers["Location"])
    result = await http.get(finished.headers["Location"])
    assert result.status == 400  # FAILED_PRECONDITION
    error = (await result.json())["error"]
    assert error["status"] == "FAILED_PRECONDITION"
    assert error["message"] == "The flaky job was asked to fail permanently."
    assert error["details"][0]["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert error["details"][0]["reason"] == "PERMANENT_FAILURE_REQUESTED"


async def test_idempotency_key_returns_the_same_operation(http) -> None:
    key = str(uuid.uuid4())
    first = await http.post(
        "/v1/operations:submit", json=_sleep(), headers={"Idempotency-Key": key}
    )
    again = await http.post(
        "/v1/operations:submit", json=_sleep(), headers={"Idempotency-Key": key}
    )
    assert first.headers["Location"] == again.headers["Location"]
    other = await http.post(
        "/v1/operations:submit", json=_sleep("1s"), headers={"Idempotency-Key": key}
    )
    assert other.status == 409
    assert (await other.json())["error"]["details"][0]["reason"] == "REQUEST_ID_REUSED"
    clash = await http.post(
        "/v1/operations:submit",
        json=_sleep() | {"requestId": str(uuid.uuid4())},
        headers={"Idempotency-Key": key},
    )
    assert clash.status == 400
    assert (await clash.json())["error"]["details"][0]["reason"] == "CONFLICTING_REQUEST_ID"


async def test_bad_input_is_aip193_with_field_violations(http) -> None:
    bad = await http.post("/v1/operations:submit", json={"jobType": "nope"})
    assert bad.status == 400
    error = (await bad.json())["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    kinds = {d["@type"].rsplit(".", 1)[-1] for d in error["details"]}
    assert kinds == {"ErrorInfo", "BadRequest"}
    broken = await http.post(
        "/v1/operations:submit", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status == 400
    assert (await broken.json())["error"]["details"][0]["reason"] == "INVALID_JSON"
    malformed = await http.get("/v1/operations/bad!name")
    assert malformed.status == 400
    missing = await http.get("/v1/operations/AAAAAAAAAAAAAAAAAAAAAA")
    assert missing.status == 404
    assert (await missing.json())["error"]["details"][0]["reason"] == "OPERATION_NOT_FOUND"


async def test_expired_operation_is_gone(http, service) -> None:
    accepted = await http.post(
        "/v1/operations:submit",
        json={
            "jobType": "test.ephemeral",
            "input": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        },
    )
    assert accepted.status in (200, 202), await accepted.text()
    location = accepted.headers["Location"]
    async with asyncio.timeout(10):
        while (response := await http.get(location, allow_redirects=False)).status != 410:
            await asyncio.sleep(0.2)
    error = (await response.json())["error"]
    assert error["details"][0]["reason"] == "OPERATION_EXPIRED"


async def test_watch_streams_ndjson_to_done(http) -> None:
    accepted = await http.post("/v1/operations:submit", json=_sleep("0.4s", 4))
    lines = []
    async with http.get(accepted.headers["Location"] + ":watch") as stream:
        assert stream.headers["Content-Type"].startswith("application/x-ndjson")
        async for raw in stream.content:
            lines.append(json.loads(raw))
    assert lines[-1]["done"] is True
    assert lines[-1]["metadata"]["state"] == "SUCCEEDED"
    assert all(not line.get("done") for line in lines[:-1])


async def test_list_cancel_wait_delete_and_job_types(http) -> None:
    accepted = await http.post("/v1/operations:submit", json=_sleep("30s", 30))
    name = accepted.headers["Location"].partition("/v1/")[2]
    cancelled = await http.post(f"/v1/{name}:cancel", json={})
    assert cancelled.status == 200
    waited = await http.post(f"/v1/{name}:wait", json={"timeout": "5s"})
    assert (await waited.json())["error"]["code"] == 1
    listed = await http.get("/v1/operations", params={"filter": "done = true", "pageSize": "10"})
    assert name in [op["name"] for op in (await listed.json())["operations"]]
    assert (await http.delete(f"/v1/{name}", json={})).status == 200
    assert (await http.get(f"/v1/{name}")).status == 404
    types = await (await http.get("/v1/jobTypes")).json()
    assert "examples.sleep" in [t["name"] for t in types["jobTypes"]]
    bad = await http.get("/v1/operations", params={"pageSize": "many"})
    assert bad.status == 400
    nowhere = await http.get("/v2/elsewhere")
    assert nowhere.status == 404
    assert (await nowhere.json())["error"]["details"][0]["reason"] == "NO_SUCH_PATH"
    wrong = await http.put("/v1/operations:submit")
    assert wrong.status == 405
    assert (await wrong.json())["error"]["status"] == "UNIMPLEMENTED"


async def test_stopping_the_door_ends_an_open_watch(service: Service, gates) -> None:
    """A watch of an operation that does not change does not hold the
    door's stop (aiohttp waits a minute for its handlers unless told): it
    is given the gRPC server's grace, then ended."""
    door = HttpFrontDoor(service.manager, "127.0.0.1:0")
    await door.start()
    stopped = False
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{door.port}") as session:
            accepted = await session.post(
                "/v1/operations:submit",
                json={
                    "jobType": "test.gate",
                    "input": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": "stop",
                    },
                },
            )
            assert accepted.status == 202, await accepted.text()
            op_id = (await accepted.json())["name"].removeprefix("operations/")
            watch = await session.get(f"/v1/operations/{op_id}:watch")
            assert watch.status == 200
            await watch.content.readline()
            await door.stop()
            stopped = True
            with contextlib.suppress(aiohttp.ClientPayloadError):
                while await watch.content.readline():
                    pass
            watch.close()
    finally:
        gates.gate("stop").set()
        if not stopped:
            await door.stop()
