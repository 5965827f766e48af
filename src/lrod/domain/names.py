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
# Base 32 in ASCII order, which every collation keeps for these characters.
_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_TIME_CHARS = 9  # 45 bits of milliseconds: until the year 3084
_RANDOM_BYTES = 10  # 13 base64url characters of them: 78 bits


def time_prefix(ms: int) -> str:
    """The 9 characters of an id made at `ms` (milliseconds since the
    epoch): later milliseconds sort after earlier ones, byte for byte."""
    out = []
    for _ in range(_TIME_CHARS):
        ms, digit = divmod(ms, 32)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))


def new_operation_id() -> str:
    return new_operation_ids(1)[0]


def new_operation_ids(count: int) -> list[str]:
    """`count` ids of this millisecond, from one read of the system's
    randomness (secrets' source) instead of one per id."""
    prefix = time_prefix(time.time_ns() // 1_000_000)
    raw = secrets.token_bytes(_RANDOM_BYTES * count)
    encode = base64.urlsafe_b64encode
    step = _RANDOM_BYTES
    return [
        prefix + encode(raw[at : at + step])[:13].decode() for at in range(0, step * count, step)
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
