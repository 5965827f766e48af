"""AIP-158 pagination: page sizes and opaque page tokens bound to their query."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from lrod.domain.errors import FieldViolation, InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


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


def encode_page_token(cursor: Cursor, binding: str) -> str:
    body = {"t": cursor.create_time.isoformat(), "i": cursor.id, "b": binding}
    raw = json.dumps(body, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, binding: str) -> Cursor | None:
    """The cursor in `token`; None for an empty token. A token that does not
    decode, or that belongs to another filter, is refused. Tokens are opaque
    to clients but not signed: a forged cursor can only move within the
    caller's own operations, which the store scopes by owner anyway."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        cursor = Cursor(datetime.fromisoformat(body["t"]), str(body["i"]))
        bound = body["b"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise _bad_token("the page token is not valid") from None
    if bound != binding:
        raise _bad_token("the page token belongs to a different filter")
    return cursor


def _bad_token(description: str) -> InvalidArgument:
    return InvalidArgument.of(
        [FieldViolation("page_token", description, "INVALID_PAGE_TOKEN")],
        reason="INVALID_PAGE_TOKEN",
    )
