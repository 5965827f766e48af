"""Operation ids: unguessable, URL-safe, in the order they were made, and
checked before any lookup.

An id is 22 characters: 9 of the millisecond it was made (base 32, digits
and a-v, so that ids sort by time under any collation, PostgreSQL's locales
included), then 13 of base64url from 78 random bits. The time prefix is for
the databases' indexes: a new id lands beside the last ones (the operations'
primary key, the attempt history's index), where a fully random id
touched a page of its own in each, at each insert (a BatchSubmit of 1,000
dirtied about 1,000 index pages; a worker's claim one per job). It is not a
timestamp to read: `create_time` is that. 78 random bits per millisecond
keep ids unguessable (UUIDv7 has 74) and collisions out of reach.

A new id never begins with "-" (it begins with a digit until the year
3084): a shell command's argument that does (`lrod get -2Xh...`, `curl`,
`grep`) is read as an option. Ids stored before this (22 characters from
128 random bits, possibly with a leading "-") have the same form and stay
valid."""

from __future__ import annotations

import base64
import re
import secrets
import time

from lrod.domain.errors import FieldViolation, InvalidArgument
from lrod.domain.operation import OPERATION_PREFIX

# 22 base64url characters (both the time-ordered ids and the older random ones).
_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# Base 32 in ASCII order, which every collation keeps for these characters;
# and every two of its digits (ten bits) at once.
_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_PAIRS = [high + low for high in _DIGITS for low in _DIGITS]
_RANDOM_BYTES = 10  # 13 base64url characters of them: 78 bits
_RANDOM_CHARS = 13


def time_prefix(ms: int) -> str:
    """The 9 characters of an id made at `ms` (milliseconds since the
    epoch, 45 bits of them: until the year 3084): later milliseconds sort
    after earlier ones, byte for byte."""
    return (
        _DIGITS[(ms >> 40) & 31]
        + _PAIRS[(ms >> 30) & 1023]
        + _PAIRS[(ms >> 20) & 1023]
        + _PAIRS[(ms >> 10) & 1023]
        + _PAIRS[ms & 1023]
    )


def _now_prefix() -> str:
    return time_prefix(time.time_ns() // 1_000_000)


def new_operation_id() -> str:
    random = base64.urlsafe_b64encode(secrets.token_bytes(_RANDOM_BYTES))
    return _now_prefix() + random[:_RANDOM_CHARS].decode()


def new_operation_ids(count: int) -> list[str]:
    """`count` ids as new_operation_id makes them (of one millisecond), from
    one read of the system's randomness (secrets' source) instead of one
    per id."""
    prefix, step = _now_prefix(), _RANDOM_BYTES
    raw = secrets.token_bytes(step * count)
    encode = base64.urlsafe_b64encode
    return [
        prefix + encode(raw[at : at + step])[:_RANDOM_CHARS].decode()
        for at in range(0, step * count, step)
    ]


def parse_operation_name(name: str, field: str = "name") -> str:
    """Return the id in `operations/{id}`, or raise InvalidArgument."""
    if not name.startswith(OPERATION_PREFIX):
        raise InvalidArgument.of(
            [FieldViolation(field, "must have the form operations/{id}", "MALFORMED_NAME")],
            reason="MALFORMED_NAME",
        )
    op_id = name[len(OPERATION_PREFIX) :]
    if not _ID.fullmatch(op_id):
        raise InvalidArgument.of(
            [FieldViolation(field, "the operation id is malformed", "MALFORMED_NAME")],
            reason="MALFORMED_NAME",
        )
    return op_id
