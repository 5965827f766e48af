"""AIP-193 error JSON, with the HTTP status from the one error table."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from lrod.api.errors import STATUS_TABLE, internal_status, status_of
from lrod.domain.errors import Code, LrodError

GONE_REASON = "OPERATION_EXPIRED"


def http_status(code: int, reason: str = "") -> int:
    """The seed's 410 Gone for an expired operation; otherwise the table."""
    if reason == GONE_REASON:
        return 410
    return STATUS_TABLE[Code(code)][1]


def error_body(status: status_pb2.Status, reason: str = "") -> dict[str, Any]:
    return {
        "error": {
            "code": http_status(status.code, reason),
            "message": status.message,
            "status": code_pb2.Code.Name(status.code),
            "details": [json_format.MessageToDict(d) for d in status.details],
        }
    }


def error_response(error: BaseException) -> web.Response:
    if isinstance(error, LrodError):
        status, reason = status_of(error), error.reason
    else:
        status, reason = internal_status(), ""
    body = error_body(status, reason)
    headers = {}
    if isinstance(error, LrodError) and error.retry_after_seconds is not None:
        headers["Retry-After"] = str(max(1, round(error.retry_after_seconds)))
    return web.json_response(body, status=body["error"]["code"], headers=headers)
