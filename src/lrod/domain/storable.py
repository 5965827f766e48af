"""What both databases can store, checked at validation so that SQLite and
PostgreSQL refuse the same requests (PostgreSQL's text cannot hold a NUL
character; SQLite's can, but lrod refuses it there too).

Every string that is stored, or sent to the database as a query value, is
checked here before it reaches the store: `text_violations` for a request
field. The store's error translation (lrod.store.errors.unstorable_value) is
the net under this rule, not a substitute for it.
"""

from __future__ import annotations

from lrod.domain.errors import FieldViolation

NUL = "\x00"


def storable(value: str) -> bool:
    return NUL not in value


def text_violations(field: str, value: str, reason: str) -> list[FieldViolation]:
    if storable(value):
        return []
    return [FieldViolation(field, "must not contain NUL (\\0) characters", reason)]
