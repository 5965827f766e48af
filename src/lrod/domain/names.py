"""Operation ids: unguessable, URL-safe, and checked before any lookup.

A new id never begins with "-": a shell command's argument that does (`lrod
get -2Xh...`, `curl`, `grep`) is read as an option. One id in 64 would, so
such a draw is drawn again (the ids stay uniform over the rest: 128 bits less
0.02). Ids stored before this may still begin with one and stay valid."""

from __future__ import annotations

import base64
import re
import secrets

from lrod.domain.errors import FieldViolation, InvalidArgument
from lrod.domain.operation import OPERATION_PREFIX

# 16 random bytes, base64url without padding: 22 characters, 128 bits.
_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def new_operation_id() -> str:
    while True:
        op_id = secrets.token_urlsafe(16)
        if not op_id.startswith("-"):
            return op_id


def new_operation_ids(count: int) -> list[str]:
    """`count` ids as new_operation_id makes them, from one read of the
    system's randomness (secrets' source) instead of one per id."""
    raw = secrets.token_bytes(16 * count)
    encode = base64.urlsafe_b64encode
    ids = [encode(raw[at : at + 16])[:22].decode() for at in range(0, 16 * count, 16)]
    return [new_operation_id() if i.startswith("-") else i for i in ids]


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
