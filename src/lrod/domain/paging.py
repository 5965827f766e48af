"""AIP-158 pagination: page sizes and opaque page tokens bound to their query.

A page token is `BODY.TAG`: BODY the cursor and what the token is bound to
(the filter, the caller) as base64url JSON, TAG an HMAC-SHA256 of BODY under a
server-side key. The key is kept in the database (`server_keys`), made by the
first process that needs it, so a token made by one server is good on every
other on the same database, and after restarts. A token that was not made by
a server of this database, or was altered, is refused with INVALID_ARGUMENT
before anything in it is read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from lrod.domain.errors import FieldViolation, InvalidArgument
from lrod.domain.storable import storable

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Tokens lrod makes are about 150 characters; anything much longer is not one.
MAX_TOKEN_LENGTH = 1024
_TAG_BYTES = 16
KEY_NAME = "page-token"


@dataclass(frozen=True)
class Cursor:
    """The last item of a page in list order (create_time, id), newest first."""

    create_time: datetime
    id: str


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.of(
            [FieldViolation("page_size", "must not be negative", "INVALID_PAGE_SIZE")],
            reason="INVALID_PAGE_SIZE",
        )
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _tag(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest()[:_TAG_BYTES])


def encode_page_token(cursor: Cursor, binding: str, key: bytes) -> str:
    fields = {"t": cursor.create_time.astimezone(UTC).isoformat(), "i": cursor.id, "b": binding}
    body = _b64(json.dumps(fields, separators=(",", ":")).encode())
    return f"{body}.{_tag(key, body)}"


def decode_page_token(token: str, binding: str, key: bytes) -> Cursor | None:
    """The cursor in `token`; None for an empty token. A token this server
    did not make, or made for another filter or caller, is refused."""
    if not token:
        return None
    body, dot, tag = token.partition(".")
    if len(token) > MAX_TOKEN_LENGTH or not dot or not body:
        raise _bad_token("the page token is not valid")
    if not hmac.compare_digest(tag.encode("ascii", "replace"), _tag(key, body).encode()):
        raise _bad_token("the page token is not valid")
    try:
        fields = json.loads(_unb64(body))
        moment = datetime.fromisoformat(fields["t"])
        cursor = Cursor(moment.astimezone(UTC), fields["i"])
        bound = fields["b"]
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error, RecursionError):
        raise _bad_token("the page token is not valid") from None
    valid_id = isinstance(cursor.id, str) and len(cursor.id) <= 64 and storable(cursor.id)
    if moment.tzinfo is None or not valid_id:
        raise _bad_token("the page token is not valid")
    if bound != binding:
        raise _bad_token("the page token belongs to a different filter")
    return cursor


def _bad_token(description: str) -> InvalidArgument:
    return InvalidArgument.of(
        [FieldViolation("page_token", description, "INVALID_PAGE_TOKEN")],
        reason="INVALID_PAGE_TOKEN",
    )
